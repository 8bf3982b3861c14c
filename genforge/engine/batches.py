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
