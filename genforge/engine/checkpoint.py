"""Checkpoints: atomic writes (temporary file + rename), last K kept, safe loading."""

import os
import pickle
import tempfile
from pathlib import Path

import torch

from genforge.errors import UserError

PREFIX, SUFFIX = "step_", ".pt"


def path_for(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{PREFIX}{step:08d}{SUFFIX}"


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


def all_checkpoints(run_dir: Path) -> list[Path]:
    folder = Path(run_dir) / "checkpoints"
    return sorted(folder.glob(f"{PREFIX}*{SUFFIX}")) if folder.is_dir() else []


def latest(run_dir: Path) -> Path | None:
    found = all_checkpoints(run_dir)
    return found[-1] if found else None


def prune(run_dir: Path, keep: int) -> None:
    for old in all_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)


def load(path: Path, map_location="cpu") -> dict:
    """Read a checkpoint without executing code from it (weights_only)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load checkpoint {path}: {first}") from None


def is_finite_state(obj) -> bool:
    """False if any floating tensor anywhere in a (nested) state holds NaN or Inf."""
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(is_finite_state(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(is_finite_state(v) for v in obj)
    return True


def save_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)
