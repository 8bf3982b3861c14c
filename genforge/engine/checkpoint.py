"""Checkpoints: atomic writes (temporary file, fsync, rename, fsync of the folder), last K kept;
reading is in checkpoint_files.

A write that fails or is killed half-way leaves at most a `.tmp-*` file, which no reader looks at
(and the next successful write removes): the previous checkpoint stays the latest and is whole."""

import os
import tempfile
from pathlib import Path

import torch

# the engine's API; reading lives in checkpoint_files, which deployment shares
from genforge.checkpoint_files import all_checkpoints, fsync_dir, latest, load, load_checkpoint, path_for, save_text  # noqa: F401

TMP_PREFIX = ".tmp-"


class _Writes:
    """The file object torch.save writes to, keeping the OSError of a failed write: torch's zip
    writer swallows it and raises an opaque RuntimeError ('unexpected pos ...') instead."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.f.flush()


def save_atomic(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            sink = _Writes(f)
            try:
                torch.save(obj, sink)
            except RuntimeError:
                if sink.error is not None:
                    raise sink.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def prune(run_dir: Path, keep: int) -> None:
    """Keep the last `keep` checkpoints; remove what killed writes left (only one process writes a run)."""
    for old in all_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    folder = Path(run_dir) / "checkpoints"
    for stale in folder.glob(f"{TMP_PREFIX}*") if folder.is_dir() else ():
        stale.unlink(missing_ok=True)


def is_finite_state(obj) -> bool:
    """False if any floating tensor anywhere in a (nested) state holds NaN or Inf."""
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(is_finite_state(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(is_finite_state(v) for v in obj)
    return True
