"""Batches as a pure function of the step number.

Because the batch for step s depends only on (seed, s), a resumed run sees exactly the data an
uninterrupted run would have seen, with no sampler state to save."""

import torch


class EpochBatches:
    """Shuffled epochs over an in-memory image set, sharded across processes like
    DistributedSampler; the last incomplete batch of an epoch is dropped."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None, batch_size: int, *,
                 seed: int, device: torch.device, rank: int = 0, world_size: int = 1):
        per_rank = len(images) // world_size
        if per_rank < batch_size:
            batch_size = max(1, per_rank)
        if per_rank == 0:
            raise ValueError("fewer images than processes")
        self.images = images.to(device)
        self.labels = labels.to(device) if labels is not None else None
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.rank, self.world_size = rank, world_size
        self.per_rank = per_rank
        self.steps_per_epoch = per_rank // batch_size
        self._epoch, self._order = -1, None

    def _order_for(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(len(self.images), generator=g)
            self._order = perm[self.rank::self.world_size][: self.per_rank].to(self.device)
            self._epoch = epoch
        return self._order

    def batch(self, step: int) -> dict:
        epoch, i = divmod(step, self.steps_per_epoch)
        idx = self._order_for(epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        batch = {"image": self.images[idx].float().div_(127.5).sub_(1.0)}
        if self.labels is not None:
            batch["label"] = self.labels[idx]
        return batch


class Prefetcher:
    """Builds the next batches in a background thread while the current step trains, so the device
    does not wait for CPU-side cropping and degradation (SR, translation). The wrapped object makes
    its batches on the CPU (its `device` is set to the CPU here); on CUDA they are pinned and copied
    with non_blocking. batch(step) is a pure function of the step, so the result is the same batch
    an unprefetched run gets."""

    def __init__(self, batches, device: torch.device, depth: int = 2):
        from concurrent.futures import ThreadPoolExecutor
        self.batches, self.device, self.depth = batches, torch.device(device), depth
        batches.device = torch.device("cpu")
        self.pending: dict[int, object] = {}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genforge-batches")

    def _make(self, step: int) -> dict:
        batch = self.batches.batch(step)
        if self.device.type == "cuda":
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch

    def batch(self, step: int) -> dict:
        future = self.pending.pop(step, None)
        for old in [s for s in self.pending if s < step]:  # a jump (restore): drop stale work
            self.pending.pop(old).cancel()
        for ahead in range(step + 1, step + 1 + self.depth):
            if ahead not in self.pending:
                self.pending[ahead] = self.pool.submit(self._make, ahead)
        batch = future.result() if future is not None else self._make(step)
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def close(self) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pool.shutdown(wait=True)
