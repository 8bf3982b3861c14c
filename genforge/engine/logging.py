"""Run logging on rank 0: JSON lines (metrics.jsonl), TensorBoard scalars and images, progress bar."""

import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

log = logging.getLogger("genforge")


class RunLogger:
    def __init__(self, run_dir: Path | None, *, total_steps: int, start_step: int = 0,
                 enabled: bool = True, progress: bool = True):
        self.enabled = enabled and run_dir is not None
        self.run_dir = Path(run_dir) if run_dir else None
        self._tb = None
        self._jsonl = None
        self.bar = None
        if not self.enabled:
            return
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step + 1)
        except ImportError:  # tensorboard is optional at run time
            log.warning("tensorboard is not installed: only metrics.jsonl is written")
        if progress:
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                            file=sys.stderr, disable=None, mininterval=0.5)

    def scalars(self, step: int, values: dict[str, float], *, kind: str = "train") -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in values.items()}
        record = {"step": step, "kind": kind, "time": round(time.time(), 3),
                  **{k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                self._tb.add_scalar(f"{kind}/{k}", v, step)

    def record(self, record: dict) -> None:
        """One JSON line of any fields (the end of a run: which limit ended it)."""
        if self.enabled:
            self._jsonl.write(json.dumps({**record, "time": round(time.time(), 3)}) + "\n")

    def image(self, step: int, tag: str, grid: torch.Tensor) -> None:
        """grid: C x H x W in [0, 1]."""
        if self.enabled and self._tb is not None:
            self._tb.add_image(tag, grid, step)

    def advance(self, values: dict[str, float] | None = None) -> None:
        """One step done; `values` (when given) replace the losses shown beside the bar."""
        if self.bar is not None:
            if values:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
            self.bar.update(1)

    def message(self, text: str, *, echo: bool = True) -> None:
        """An event in metrics.jsonl, also printed unless `echo` is off (the caller reports it itself)."""
        if not self.enabled:
            return
        if echo and self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif echo:
            print(text, file=sys.stderr)
        self._jsonl.write(json.dumps({"kind": "event", "time": round(time.time(), 3), "message": text}) + "\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()


def training_seconds(run_dir, max_gap: float = 600.0) -> float | None:
    """Wall time a run spent training, from its metrics.jsonl: the sum of the intervals between
    records, leaving out gaps longer than `max_gap` (the run was stopped and resumed later)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return None
    times = [r["time"] for r in map(json.loads, path.read_text().splitlines()) if "time" in r]
    return sum(b - a for a, b in zip(times, times[1:]) if b - a < max_gap) if len(times) > 1 else None


def cpu_time_text(run_dir, threads: int) -> str:
    """The CPU time of a run for a model card: wall minutes and the threads it had."""
    seconds = training_seconds(run_dir)
    if seconds is None:
        return "n/a"
    return (f"{seconds / 60:.0f} min wall, {threads or 'all'} thread(s) on a shared "
            f"{os.cpu_count()}-core machine")
