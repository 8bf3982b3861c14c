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

from genforge.errors import DiskError, UserError

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


def make_dir(path: Path, what: str) -> Path:
    """mkdir -p, with a file in the way, a read-only disk or no permission one DiskError naming
    `what` (e.g. 'run directory')."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DiskError(f"cannot create {what} {path}: it exists and is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if DiskError.matches(err):
            raise DiskError.from_os(err, f"cannot create {what} {path}", name_file=False) from None
        raise
    return path


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a crash after it cannot bring the old name back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a directory: the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def save_text(path: Path, text: str) -> None:
    """Write a small text file atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


CHECKPOINT_KEYS = ("step", "task", "rng")  # what a resume needs; "export" and "config": what a model needs


def load_checkpoint(path: Path, *, need: tuple[str, ...] = CHECKPOINT_KEYS, map_location="cpu") -> dict:
    """load(), then check it is a genforge training checkpoint holding the keys in `need`."""
    ckpt = load(path, map_location)
    if not isinstance(ckpt, dict):
        raise UserError(f"{path} is not a genforge checkpoint (it holds a {type(ckpt).__name__}, not a mapping)")
    missing = [k for k in need if k not in ckpt]
    if missing:
        raise UserError(f"{path} is not a genforge checkpoint (no {', '.join(missing)})")
    if "step" in need and (isinstance(ckpt["step"], bool) or not isinstance(ckpt["step"], int) or ckpt["step"] < 0):
        raise UserError(f"{path} is not a genforge checkpoint (step is {ckpt['step']!r})")
    for key in ("task", "rng", "export", "config"):
        if key in need and not isinstance(ckpt[key], dict):
            raise UserError(f"{path} is not a genforge checkpoint ({key} is a {type(ckpt[key]).__name__})")
    if "export" in need and not all(torch.is_tensor(v) for v in ckpt["export"].values()):
        raise UserError(f"{path} is not a genforge checkpoint (its export weights are not all tensors)")
    if "config" in need:
        _check_run_config(ckpt["config"], f"{path} is not a genforge checkpoint: its config")
    return ckpt


# the run-config entries deployment reads: a model folder or checkpoint without them is refused up front
_RUN_KEYS = (("model", "name"), ("task", "kind"), ("data", "dataset"))


def _check_run_config(run, what: str) -> None:
    if not isinstance(run, dict):
        raise UserError(f"{what} must be a mapping of sections (model, task, data, train), not "
                        f"{'null' if run is None else type(run).__name__}")
    for section, key in _RUN_KEYS:
        if section not in run:
            raise UserError(f"{what} has no {section!r} section")
        if not isinstance(run[section], dict):
            raise UserError(f"{what}: {section} must be a mapping, not {type(run[section]).__name__}")
        if not isinstance(run[section].get(key), str):
            raise UserError(f"{what}: {section}.{key} is missing or not a string")


@dataclass
class ModelSource:
    name: str
    config: dict          # the resolved run config (model, task, data, train, ...)
    state: dict           # the export module's weights
    card: str = ""
    training: dict | None = None  # a run's: step, elapsed minutes and which limit ended it (train.max_minutes)


# how a pickle starts: torch.save's zip archive, or a raw pickle (protocol 2 and later)
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")


def _read_folder(folder: Path) -> ModelSource:
    where = f"cannot read model folder {folder}"
    try:
        meta = json.loads((folder / "config.json").read_bytes().decode("utf-8"))
    except OSError as err:
        raise UserError(f"{where}: config.json: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{where}: config.json is not UTF-8 text (byte 0x{err.object[err.start]:02x} at "
                        f"offset {err.start})") from None
    except ValueError as err:
        raise UserError(f"{where}: config.json is not valid JSON ({str(err)[:200]})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{where}: config.json must hold a JSON object with a 'run' section, "
                        f"not {'null' if meta is None else type(meta).__name__}")
    if "run" not in meta:
        raise UserError(f"{where}: config.json has no 'run' section (the run config the network is built from)")
    _check_run_config(meta["run"], f"{where}: config.json: run")
    state = _read_safetensors(folder / "model.safetensors", where)
    try:
        card = (folder / "README.md").read_text(errors="replace") if (folder / "README.md").is_file() else ""
    except OSError:
        card = ""
    training = meta.get("training") if isinstance(meta.get("training"), dict) else None
    return ModelSource(folder.name, meta["run"], state, card, training)


def _read_safetensors(path: Path, where: str) -> dict:
    """A safetensors file's tensors. safetensors parses a header and copies bytes, never unpickles; a
    pickle under that name (which it cannot parse) is recognised only to say so."""
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001  (SafetensorError and IO errors all mean: not loadable)
        if isinstance(err, OSError):
            raise UserError(f"{where}: {path.name}: {err.strerror or err}") from None
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        head = b"?"
    if not head:
        raise UserError(f"{where}: {path.name} is empty")
    if head.startswith(_PICKLE_MAGIC):
        raise UserError(f"{where}: {path.name} is a pickle (torch.save) file, not safetensors; "
                        "refusing to unpickle it")
    raise UserError(f"{where}: {path.name} is not a valid safetensors file ({first})")


def _read_run(run_dir: Path) -> ModelSource:
    last = latest(run_dir)
    if last is None:
        raise UserError(f"run {run_dir} has no checkpoint yet")
    ckpt = load_checkpoint(last, need=("export", "config"))
    return ModelSource(run_dir.name, ckpt["config"], ckpt["export"], training=_training(ckpt))


def _training(ckpt: dict) -> dict | None:
    """How far a checkpoint's run got; None for checkpoints written before it was recorded."""
    if "elapsed_s" not in ckpt:
        return None
    return {"step": ckpt.get("step"), "elapsed_min": round(float(ckpt["elapsed_s"]) / 60, 1),
            "ended_by": ckpt.get("ended_by")}


def read_source(name_or_path: str) -> ModelSource:
    path = Path(name_or_path)
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return _read_folder(path)
    if (path / "checkpoints").is_dir() or (path / "config.yaml").is_file():
        return _read_run(path)
    if path.suffix == ".pt" and path.is_file():
        ckpt = load_checkpoint(path, need=("export", "config"))
        return ModelSource(path.stem, ckpt["config"], ckpt["export"], training=_training(ckpt))
    if (PRETRAINED_DIR / name_or_path / "config.json").is_file() and "/" not in name_or_path:
        return _read_folder(PRETRAINED_DIR / name_or_path)
    names = ", ".join(shipped_names()) or "none"
    raise UserError(f"no model {name_or_path!r}: not a shipped model ({names}), a model folder or a run directory")


def shipped_names() -> list[str]:
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").is_file()) \
        if PRETRAINED_DIR.is_dir() else []
