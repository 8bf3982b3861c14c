"""Weights of the feature networks that ship inside the package (genforge/metrics/weights/): one way to
write them (safetensors, the training summary as metadata, readable by everyone) and one way to load them
(a UserError that says how to recreate a missing or broken file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from genforge.errors import UserError


def save_weights(net: nn.Module, out_path: str | Path | None, summary: dict, verbose: bool = False) -> dict:
    """The end of a feature network's training: net's state dict written to out_path (if given) with the
    training summary as metadata (summary["path"] records where), the summary printed if verbose."""
    if out_path is not None:
        from safetensors.torch import save_file

        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(out), metadata={k: str(v) for k, v in summary.items()})
        out.chmod(0o644)  # package data: readable by everyone
        summary["path"] = str(out)
    if verbose:
        print(json.dumps(summary, indent=2), flush=True)
    return summary


def load_weights(build: Callable[[dict], nn.Module], path: Path, name: str, module: str,
                 device: str | torch.device) -> nn.Module:
    """The network build(metadata) with the weights at path, frozen, in eval mode on device. name is the
    network's class name and module the ``python -m`` module that recreates the file, both for the errors."""
    if not path.is_file():
        raise UserError(f"{name} weights not found at {path}; recreate them with `python -m {module} --out {path}`")
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        net = build(meta)
        net.load_state_dict(load_file(str(path), device="cpu"), strict=True)
    except Exception as exc:  # OSError, safetensors' own header errors, state-dict mismatches
        raise UserError(f"cannot load {name} weights from {path}: {exc}") from exc
    return net.requires_grad_(False).to(device).eval()
