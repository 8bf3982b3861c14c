"""Reading training checkpoints: where they are and how to load them without running code.

Shared by the engine (resume) and deployment (a run directory used as a model), which must not
depend on the engine."""

from pathlib import Path

import torch

from genforge.errors import UserError

PREFIX, SUFFIX = "step_", ".pt"


def path_for(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{PREFIX}{step:08d}{SUFFIX}"


def all_checkpoints(run_dir: Path) -> list[Path]:
    folder = Path(run_dir) / "checkpoints"
    return sorted(folder.glob(f"{PREFIX}*{SUFFIX}")) if folder.is_dir() else []


def latest(run_dir: Path) -> Path | None:
    found = all_checkpoints(run_dir)
    return found[-1] if found else None


def load(path: Path, map_location="cpu") -> dict:
    """A checkpoint's tensors, never its code (weights_only)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001  (pickle, zip and IO errors all mean: not loadable)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UserError(f"cannot load checkpoint {path}: {first}") from None
