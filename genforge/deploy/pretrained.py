"""Model folders (config.json + model.safetensors + README.md) and loading by name or path.

A shipped model is a folder under genforge/pretrained/. A training run directory is accepted
wherever a model folder is: its latest checkpoint's exported weights are read with
weights_only=True. Nothing here executes code from a file."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors.torch import save

from genforge import registry
from genforge.checkpoint_files import PRETRAINED_DIR, ModelSource, make_dir, read_source  # noqa: F401  (deploy API)
from genforge.errors import DiskError, UserError

FORMAT = 1


def list_models() -> list[dict]:
    """Every shipped model: name, task, description."""
    out = []
    for folder in sorted(PRETRAINED_DIR.iterdir()) if PRETRAINED_DIR.is_dir() else []:
        cfg_file = folder / "config.json"
        if cfg_file.is_file():
            meta = json.loads(cfg_file.read_text())
            out.append({"name": folder.name, "task": meta.get("task"), "model": meta["run"]["model"]["name"],
                        "description": meta.get("description", "")})
    return out


def names_a_model(arg: str) -> bool:
    """Whether a command-line argument is a model (shipped name, model folder, run directory,
    checkpoint, weights or .onnx file) rather than an image or an image folder."""
    path = Path(arg)
    if path.is_dir():
        return any((path / f).exists() for f in ("config.json", "config.yaml", "checkpoints"))
    if path.suffix.lower() in (".pt", ".pth", ".ckpt", ".safetensors", ".onnx"):
        return True
    return not path.exists() and "/" not in arg and (PRETRAINED_DIR / arg / "config.json").is_file()


def build_export_module(source: ModelSource, device="cpu") -> torch.nn.Module:
    """Rebuild the network from the config alone and load its weights."""
    try:
        model_row = registry.model_row(source.config["model"]["name"])
        model_cfg = model_row.config.model_validate(source.config["model"])
        task_row = registry.task_row(source.config["task"]["kind"])
    except (ValidationError, KeyError, TypeError, UserError) as err:
        first = str(err).strip().splitlines()[0][:200]
        raise UserError(f"model {source.name!r}: its config does not describe a known network ({first})") from None
    module = task_row.export_network(model_cfg)
    try:
        module.load_state_dict(source.state)
    except RuntimeError as err:
        raise UserError(f"model {source.name!r}: weights do not fit its config: "
                        f"{str(err).splitlines()[0]}") from None
    from genforge.nn.norms import fold_spectral_
    fold_spectral_(module)  # inference needs no power iteration, and ONNX has no operator for it
    if hasattr(module, "fold_"):  # re-parameterised training branches -> plain convolutions (models/repsr.py)
        module.fold_()
    return module.to(device).eval()


def export_folder(run_or_model: str, out: str | Path, *, description: str = "", card: str | None = None,
                  half: bool = False) -> Path:
    """Write a model folder atomically (built beside `out`, then renamed into place). With `half`
    the weights are stored as float16 (half the size); loading casts them back to float32."""
    return write_folder(read_source(run_or_model), out, description=description, card=card, half=half)


def write_folder(source: ModelSource, out: str | Path, *, description: str = "", card: str | None = None,
                 half: bool = False) -> Path:
    """A model folder from a resolved run config and the export module's weights."""
    build_export_module(source)  # refuse to export what cannot be loaded back
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"output {out} exists and is not empty")
    make_dir(out.parent, "output folder")
    meta = {"genforge_format": FORMAT, "task": registry.family_of(source.config["task"]["kind"]),
            "description": description, "run": source.config}
    if source.training:
        meta["training"] = source.training
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in source.state.items()}
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    except OSError as err:
        raise _write_error(err, out) from None
    try:
        (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
        # serialised here and written by Python: a full disk is an OSError, not a SafetensorError
        (tmp / "model.safetensors").write_bytes(save(state))
        (tmp / "README.md").write_text(card if card is not None else default_card(out.name, source, description))
        tmp.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
        for f in tmp.iterdir():
            f.chmod(0o644)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise _write_error(err, out) from None
        raise
    return out


def _write_error(err: OSError, out: Path) -> BaseException:
    if not DiskError.matches(err):
        return err
    return DiskError.from_os(err, f"cannot write model folder {out}", name_file=False)


def default_card(name: str, source: ModelSource, description: str) -> str:
    cfg = source.config
    data, train = cfg.get("data") or {}, cfg.get("train") or {}
    card = (f"# {name}\n\n{description}\n\n- task: {cfg['task']['kind']}\n- model: {cfg['model']['name']}\n"
            f"- data: {data.get('dataset', '?')} ({data.get('split', '?')})\n- steps: {train.get('steps', '?')}\n")
    return card + training_line(source.training, train)


def training_line(training: dict | None, train: dict) -> str:
    """The card's line on how the run ended: at train.steps, or cut by train.max_minutes."""
    if not training or not training.get("ended_by"):
        return ""
    if training["ended_by"] == "max_minutes":
        return (f"- ended by: train.max_minutes ({train.get('max_minutes')} min) at step {training['step']} of "
                f"{train.get('steps', '?')}, {training['elapsed_min']} min of training\n")
    return f"- ended by: train.steps ({training['step']}), {training['elapsed_min']} min of training\n"
