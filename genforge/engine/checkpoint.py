"""Checkpoints: atomic writes (temporary file + rename), last K kept; reading is in checkpoint_files."""

import os
import tempfile
from pathlib import Path

import torch

# the engine's API; reading lives in checkpoint_files, which deployment shares
from genforge.checkpoint_files import all_checkpoints, latest, load, path_for, save_text  # noqa: F401


def save_atomic(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prune(run_dir: Path, keep: int) -> None:
    for old in all_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)


def is_finite_state(obj) -> bool:
    """False if any floating tensor anywhere in a (nested) state holds NaN or Inf."""
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(is_finite_state(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(is_finite_state(v) for v in obj)
    return True
