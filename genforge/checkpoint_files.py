"""Reading training checkpoints and model folders: where they are and how to load them without
running code.

Shared by the engine (resume), training (`init:` weights) and deployment (a run directory used as
a model), which must not depend on the engine. A model folder is config.json + model.safetensors
(+ README.md); a shipped model is a folder under genforge/pretrained/."""

import json
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from genforge.errors import UserError

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"

PREFIX, SUFFIX = "step_", ".pt"


def path_for(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{PREFIX}{step:08d}{SUFFIX}"


def all_checkpoints(run_dir: Path) -> list[Path]:
    folder = Path(run_dir) / "checkpoints"
    return sorted(folder.glob(f"{PREFIX}*{SUFFIX}")) if folder.is_dir() else []


def latest(run_dir: Path) -> Path | None:
    found = all_checkpoints(run_dir)
    return found[-1] if found else None


def save_text(path: Path, text: str) -> None:
    """Write a small text file atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


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


@dataclass
class ModelSource:
    name: str
    config: dict          # the resolved run config (model, task, data, train, ...)
    state: dict           # the export module's weights
    card: str = ""


def _read_folder(folder: Path) -> ModelSource:
    try:
        meta = json.loads((folder / "config.json").read_text())
        state = load_file(str(folder / "model.safetensors"))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read model folder {folder}: {err}") from None
    card = (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""
    return ModelSource(folder.name, meta["run"], state, card)


def _read_run(run_dir: Path) -> ModelSource:
    last = latest(run_dir)
    if last is None:
        raise UserError(f"run {run_dir} has no checkpoint yet")
    ckpt = load(last)
    if "export" not in ckpt or "config" not in ckpt:
        raise UserError(f"{last} is not a genforge checkpoint")
    return ModelSource(run_dir.name, ckpt["config"], ckpt["export"])


def read_source(name_or_path: str) -> ModelSource:
    path = Path(name_or_path)
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return _read_folder(path)
    if (path / "checkpoints").is_dir() or (path / "config.yaml").is_file():
        return _read_run(path)
    if path.suffix == ".pt" and path.is_file():
        ckpt = load(path)
        if "export" not in ckpt:
            raise UserError(f"{path} is not a genforge checkpoint")
        return ModelSource(path.stem, ckpt["config"], ckpt["export"])
    if (PRETRAINED_DIR / name_or_path / "config.json").is_file() and "/" not in name_or_path:
        return _read_folder(PRETRAINED_DIR / name_or_path)
    names = ", ".join(shipped_names()) or "none"
    raise UserError(f"no model {name_or_path!r}: not a shipped model ({names}), a model folder or a run directory")


def shipped_names() -> list[str]:
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").is_file()) \
        if PRETRAINED_DIR.is_dir() else []
