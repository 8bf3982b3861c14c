"""The one inference base: opening a model (torch or ONNX), and what every family's wrapper does
around its network: 8/16-bit and alpha handling, float conversion, padding to the network's size
multiple and cropping back, clamping and quantising, tiling with overlap. The wrappers (one per
family, registered with genforge.registry.register_wrapper) are used by the CLI, the Python API,
ONNX Runtime and the HTTP service alike."""

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genforge import registry
from genforge.deploy.pretrained import ModelSource, build_export_module, read_source
from genforge.device import select_device
from genforge.errors import UserError


def is_onnx(name_or_path) -> bool:
    return str(name_or_path).lower().endswith(".onnx")


def open_model(name_or_path: str, device: str, source=None):
    """(source, module, device): the torch network, or for an .onnx file an ONNX Runtime runner
    with the same call signature (CPU), so the wrappers serve both unchanged."""
    if is_onnx(name_or_path) and source is None:
        from genforge.deploy.export import OnnxRunner
        runner = OnnxRunner(name_or_path)
        return ModelSource(runner.name, runner.config, {}), runner, torch.device("cpu")
    source = source or read_source(name_or_path)
    device = select_device(device)
    return source, build_export_module(source, device), device


def family_of_source(source: ModelSource) -> str:
    task = source.config.get("task") if isinstance(source.config, dict) else None
    kind = task.get("kind") if isinstance(task, dict) else None
    if not isinstance(kind, str):
        raise UserError(f"model {source.name!r}: its config names no task")
    return registry.family_of(kind)


def load(name_or_path: str, device: str = "auto"):
    """The inference wrapper for a shipped model name, a model folder, a run directory or .onnx file."""
    opened = open_model(name_or_path, device)  # read the file once; the wrapper takes it as it is
    return registry.wrapper_row(family_of_source(opened[0])).wrapper(name_or_path, opened=opened)


# --- arrays <-> tensors ------------------------------------------------------------------------
def split_image(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, int]:
    """H x W [x C] uint8/uint16 -> (colour H x W x 1|3, alpha H x W x 1 or None, peak 255|65535)."""
    if image.ndim == 2:
        image = image[:, :, None]
    peak = 65535 if image.dtype == np.uint16 else 255
    c = image.shape[2]
    alpha = image[:, :, -1:] if c in (2, 4) else None
    return (image[:, :, :3] if c in (3, 4) else image[:, :, :1]), alpha, peak


def to_tensor(array: np.ndarray, peak: int) -> torch.Tensor:
    """H x W x C integers -> C x H x W float32 in [0, 1]."""
    return torch.from_numpy(array.astype(np.float32) / peak).permute(2, 0, 1)


def quantise(y: torch.Tensor, peak: int, *, signed: bool = False) -> np.ndarray:
    """C x H x W float in [0, 1] (or [-1, 1] when signed) -> H x W x C uint8/uint16, clamped."""
    y = ((y.float().clamp(-1, 1) + 1) * (peak / 2)) if signed else y.float().clamp(0, 1) * peak
    dtype = np.uint16 if peak > 255 else np.uint8
    return np.ascontiguousarray(y.round_().permute(1, 2, 0).cpu().numpy().astype(dtype))


def with_alpha(out: np.ndarray, alpha: np.ndarray | None, *, rgb: bool = True) -> np.ndarray:
    """Append an alpha channel (converted to out's bit depth); with `rgb` grey output becomes RGBA."""
    if alpha is None:
        return out
    if alpha.dtype != out.dtype:
        src, dst = (65535, 255) if alpha.dtype == np.uint16 else (255, 65535)
        alpha = np.round(alpha.astype(np.float64) * dst / src).astype(out.dtype)
    rgb = np.repeat(out, 3, axis=2) if rgb and out.shape[2] == 1 else out
    return np.ascontiguousarray(np.concatenate([rgb, alpha[: out.shape[0], : out.shape[1]]], axis=2))


def pad_to_multiple(x: torch.Tensor, multiple: int, *, extra_width: int = 0) -> torch.Tensor:
    """Pad the bottom and right edges up to a multiple (mirrored where the image is large enough)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple + extra_width
    if ph or pw:
        mode = "reflect" if h > ph and w > pw else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x


def tiled(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, tile: int, overlap: int,
          scale: int, multiple: int, peak: int, signed: bool = False) -> np.ndarray:
    """run(1 x C x h x w) -> 1 x C' x sh x sw over tile x tile pieces of x (C x H x W), each read with
    `overlap` extra pixels on every side (rounded up to the size multiple, so strided levels stay
    aligned) and only its centre kept: the result equals the untiled one wherever the overlap covers
    the receptive field. Memory is bounded by the tile, whatever the image's size."""
    _, H, W = x.shape
    s, m = scale, multiple
    if not tile or (H <= tile and W <= tile):
        return quantise(run(x[None])[0], peak, signed=signed)
    tile = max(m, tile - tile % m)
    pad = overlap + (-overlap) % m
    out = None
    for top in range(0, H, tile):
        for left in range(0, W, tile):
            t0, l0 = max(0, top - pad), max(0, left - pad)
            y = run(x[None, :, t0:min(H, top + tile + pad), l0:min(W, left + tile + pad)])[0]
            bottom, right = min(H, top + tile), min(W, left + tile)
            core = quantise(y[:, (top - t0) * s:(bottom - t0) * s, (left - l0) * s:(right - l0) * s], peak,
                            signed=signed)
            if out is None:
                out = np.empty((H * s, W * s, core.shape[2]), dtype=core.dtype)
            out[top * s:bottom * s, left * s:right * s] = core
    return out


def read_input(image, reader):
    """A path, PIL image or array -> an array, for the Python one-liners."""
    from PIL import Image
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return reader(image)
    return np.asarray(image) if isinstance(image, Image.Image) else np.asarray(image)


def to_pil(out: np.ndarray):
    """An H x W x C uint8 array -> a PIL image (16-bit arrays are returned as they are)."""
    from PIL import Image
    if out.dtype != np.uint8:
        return out
    return Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out)


@dataclass
class OnnxSignature:
    """How a family's network is exported: example inputs, names, dynamic axes, the inputs ONNX
    Runtime is checked on, and the metadata its runner needs to stand in for the module."""

    inputs: tuple
    input_names: list[str]
    output_name: str
    dynamic_axes: dict
    checks: dict
    meta: dict = field(default_factory=dict)
    integer_inputs: tuple[str, ...] = ()
    output_shape: Callable | None = None  # inputs -> the output's shape (checked on export and in the tests)


class InferenceWrapper:
    """What every family's wrapper shares. Subclasses set `noun` (what the family's models are
    called in errors), `metrics` (what `genforge eval` computes for them), `upload_routes`, and
    override describe(), onnx_signature(), add_routes(), add_commands() and evaluate() where the
    family has them."""

    family = ""  # set by register_wrapper
    noun = "model"
    hint = ""
    metrics: tuple[str, ...] = ()
    upload_routes: dict[str, int] = {}  # service route -> image files a request may carry (body limit)

    def __init__(self, name_or_path: str, device: str = "auto", *, source=None, opened=None):
        self.source, self.module, self.device = opened or open_model(name_or_path, device, source)
        family = family_of_source(self.source)
        if family != self.family:
            raise UserError(f"model {self.source.name!r} is a {family} model, not a {self.noun}{self.hint}")

    def describe(self) -> dict:
        """What /v1/models and the page show."""
        return {"name": self.source.name, "network": self.source.config["model"]["name"], "task": self.family}

    @classmethod
    def onnx_signature(cls, module, gen: torch.Generator) -> OnnxSignature | None:
        return None

    @classmethod
    def add_routes(cls, app, service) -> None:
        """The family's HTTP endpoints (genforge/deploy/serve.py gives `service`)."""

    @classmethod
    def add_commands(cls, sub) -> None:
        """The family's own command-line commands (sub: argparse's subparsers)."""

    def evaluate(self, metrics: list[str], **options) -> dict:
        raise UserError(f"genforge eval has no metrics for {self.family} models")
