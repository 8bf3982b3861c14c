"""The one training loop. It knows only the Task interface (genforge/tasks/base.py):
devices, distribution, checkpoints, logging, callbacks, interruption and non-finite recovery
live here; everything model-specific lives in the task."""

import copy
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch

from genforge.engine import checkpoint, distributed
from genforge.engine.batches import Prefetcher
from genforge.engine.budget import WallClock, end_message
from genforge.engine.logging import RunLogger
from genforge.engine.syncs import host_list
from genforge.errors import UserError


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was written."""

    def __init__(self, signum: int, step: int, path: Path | None):
        super().__init__(f"interrupted at step {step}")
        self.signum, self.step, self.path = signum, step, path


class Diverged(UserError):
    pass


def rng_state(device: torch.device | None = None) -> dict:
    """Every RNG a step may draw from, in types torch.load(weights_only=True) accepts. Of the GPUs
    only the training device's generator is saved, so a run resumes on a machine with fewer GPUs."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore rng_state(); the generator states are byte tensors and must be CPU tensors, whatever
    map_location the checkpoint was read with."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is not None and device is not None and device.type == "cuda":
        if isinstance(cuda, (list, tuple)):  # checkpoints before this version held every GPU's state
            cuda = cuda[0] if cuda else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda.cpu(), device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so a step is never cut in half."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _NonFiniteGuard:
    """Counts steps skipped for a non-finite loss; after `limit` in a row, goes back to the last
    checkpoint (or the starting weights before there is one) and halves the learning rates."""

    def __init__(self, limit: int, run_dir: Path | None, device, task):
        self.limit, self.run_dir, self.device = limit, run_dir, device
        self.streak = self.restores = 0
        has_checkpoint = run_dir is not None and checkpoint.latest(run_dir) is not None
        self.fallback = None if has_checkpoint else copy.deepcopy(task.state_dict())

    def skipped(self, step: int, task, logger) -> None:
        self.streak += 1
        logger.message(f"step {step}: non-finite loss, step skipped ({self.streak} in a row)")
        logger.scalars(step, {"skipped": 1.0}, kind="nonfinite")
        if self.streak < self.limit:
            return
        self.restores += 1
        if self.restores > 3:
            raise Diverged(f"training diverged: non-finite losses persist after {self.restores - 1} "
                           f"restores with lower learning rates")
        last = checkpoint.latest(self.run_dir) if self.run_dir else None
        task.load_state_dict(checkpoint.load(last)["task"] if last else self.fallback)
        task.scale_learning_rate(0.5)
        logger.message(f"step {step}: restored {'step ' + last.stem if last else 'the start'}"
                       f" and halved the learning rates")
        self.streak = 0


def _mean_metrics(sums: dict, counts: dict) -> dict[str, float]:
    """The logged means; the device sums come back in one transfer (one sync per log_every steps)."""
    keys = [k for k in sums if torch.is_tensor(sums[k])]
    values = dict(zip(keys, host_list(torch.stack([sums[k].float() for k in keys])))) if keys else {}
    return {k: float(values.get(k, sums[k])) / counts[k] for k in sums}


def fit(task, batches, cfg, *, run_dir: Path | None, dist: distributed.Dist | None = None,
        callbacks=(), resume: Path | dict | None = None, config: dict | None = None,
        progress: bool = True) -> int:
    """Train `task` for cfg.steps steps on `batches` (an object with .batch(step) -> dict), or until
    cfg.max_minutes of wall time (resumes included) if that comes first.

    Returns the final step. Raises Interrupted after checkpointing on SIGINT/SIGTERM."""
    dist = dist or distributed.Dist()
    run_dir = Path(run_dir) if run_dir else None
    step, elapsed_s = 0, 0.0
    task.set_precision(cfg.precision, channels_last=cfg.channels_last)
    if dist.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: the fastest kernels are worth finding
    if cfg.compile:
        for name in task.compilable():
            task.networks[name].compile()
    if resume is not None:
        # read on the CPU: load_state_dict moves weights and optimizer state to the networks' device,
        # while the RNG states must stay CPU byte tensors. A dict: the checkpoint, already read.
        state = resume if isinstance(resume, dict) else checkpoint.load_checkpoint(resume)
        task.load_state_dict(state["task"])
        step = state["step"]
        elapsed_s = float(state.get("elapsed_s", 0.0))  # checkpoints before train.max_minutes: 0
        if dist.world_size == 1 or dist.is_main:
            try:
                set_rng_state(state["rng"], dist.device)
            except (KeyError, TypeError, ValueError, RuntimeError) as err:
                raise UserError(f"checkpoint at step {step}: its RNG state is damaged ({err!s:.200})") from None
        else:  # only rank 0's generator state is saved; other ranks reseed deterministically
            seed_everything(hash((step, dist.rank)) % 2**31)
    for net in task.networks.values():
        distributed.broadcast_module(net)

    writes = dist.is_main and run_dir is not None
    logger = RunLogger(run_dir, total_steps=cfg.steps, start_step=step, enabled=writes, progress=progress)
    guard = _NonFiniteGuard(cfg.max_nonfinite, run_dir, dist.device, task)
    clock = WallClock(getattr(cfg, "max_minutes", None), elapsed_s)
    clock.follow(task.schedulers.values())
    ended_by = None

    def save(at: int) -> Path | None:
        if not writes:
            return None
        task_state = task.state_dict()
        if not checkpoint.is_finite_state(task_state):
            logger.message(f"step {at}: weights are not finite; checkpoint not written")
            return None
        path = checkpoint.path_for(run_dir, at)
        checkpoint.save_atomic({"format": 1, "step": at, "task": task_state,
                                "export": task.export_module().state_dict(),
                                "rng": rng_state(dist.device), "config": config,
                                "elapsed_s": clock.elapsed(), "ended_by": ended_by}, path)
        checkpoint.prune(run_dir, cfg.keep_last)
        guard.fallback = None
        return path

    if cfg.prefetch == "on" or (cfg.prefetch == "auto" and dist.device.type == "cuda"):
        if getattr(batches, "host_side", False):
            batches = Prefetcher(batches, dist.device)
    for cb in callbacks:
        cb.on_start(step, task, logger)
    sums, counts = {}, {}
    timer, images_seen = time.perf_counter(), 0
    try:
        with _StopFlag() as stop:
            while step < cfg.steps and not clock.out_of_time():
                batch = batches.batch(step)
                task.begin_step()
                with task.autocast():
                    metrics = task.training_step(batch, step)
                task.end_step()
                step += 1
                clock.update(step, cfg.log_every, dist)
                final = step == cfg.steps or clock.out_of_time()
                if final:
                    ended_by = "steps" if step == cfg.steps else "max_minutes"
                images_seen += len(next(iter(batch.values())))
                if task.skipped_step:
                    guard.skipped(step, task, logger)
                else:
                    guard.streak = 0
                    for k, v in metrics.items():  # tensors stay on the device: no sync per step
                        sums[k] = sums.get(k, 0.0) + (v.detach() if torch.is_tensor(v) else v)
                        counts[k] = counts.get(k, 0) + 1
                if step % cfg.log_every == 0 or final:
                    means = _mean_metrics(sums, counts)
                    elapsed = time.perf_counter() - timer
                    means["images_per_s"] = images_seen * dist.world_size / max(elapsed, 1e-9)
                    means.update(task.learning_rates())
                    logger.scalars(step, means)
                    logger.advance({k: v for k, v in means.items() if k.startswith("loss")})
                    sums, counts, timer, images_seen = {}, {}, time.perf_counter(), 0
                else:
                    logger.advance()
                for cb in callbacks:
                    cb.on_step(step, task, logger)
                if step % cfg.checkpoint_every == 0 or final:
                    save(step)
                stopping = stop.signum is not None
                if dist.enabled:  # ranks agree on stopping every log_every steps: a collective is a sync
                    stopping = step % cfg.log_every == 0 and not distributed.all_true(not stopping, dist.device)
                if stopping and not final:
                    path = save(step)
                    # the Interrupted exception carries it to the caller (the CLI prints it once)
                    logger.message(f"interrupted at step {step}; checkpoint {path}", echo=False)
                    raise Interrupted(stop.signum or signal.SIGTERM, step, path)
        ended_by = ended_by or ("steps" if step >= cfg.steps else "max_minutes")
        logger.message(end_message(ended_by, step, cfg.steps, clock))
        logger.record({"kind": "end", "step": step, "ended_by": ended_by,
                       "elapsed_min": round(clock.elapsed() / 60, 3)})
        for cb in callbacks:
            cb.on_end(step, task, logger)
    finally:
        logger.close()
        if isinstance(batches, Prefetcher):
            batches.close()
    distributed.barrier()
    return step


