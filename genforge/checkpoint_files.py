"""Reading training checkpoints: where they are and how to load them without running code.

Shared by the engine (resume) and deployment (a run directory used as a model), which must not
depend on the engine."""

import pickle
import re
import warnings
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


def load(path: Path, map_location="cpu", *, what: str = "checkpoint") -> dict:
    """A checkpoint's tensors, never its code (weights_only). `what` names the file in errors."""
    try:
        with warnings.catch_warnings():  # a pickle from outside torch.save: refused below, not warned about
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False, exactly what must not be done with such a
        # file: say what the restricted unpickler stopped at instead
        text = str(err)
        wanted = re.search(r"GLOBAL (\S+)", text)
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
        if wanted:
            reason = f"refusing to unpickle code: the file is not a plain weights file (it asks for {wanted.group(1)})"
        else:
            reason = ("refusing to unpickle it: the file is not a plain weights file or is corrupt "
                      f"({(detail.group(1) if detail else text.splitlines()[0])[:200]})")
        raise UserError(f"cannot load {what} {path}: {reason}") from None
    except Exception as err:  # noqa: BLE001  (zip and IO errors all mean: not loadable)
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
        first = (text.splitlines() or ["unexpected end of file" if isinstance(err, EOFError)
                                       else type(err).__name__])[0]
        first = first.split(". ")[0][:300]  # torch's zip errors go on for several sentences
        if isinstance(err, OSError):
            raise UserError(f"cannot load {what} {path}: {first}") from None
        raise UserError(f"cannot load {what} {path}: not a readable torch file ({first})") from None
