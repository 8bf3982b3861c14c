"""The one inference base: opening a model (torch or ONNX), and what every family's wrapper does
around its network: 8/16-bit and alpha handling, float conversion, padding to the network's size
multiple and cropping back, clamping and quantising, tiling with overlap and the tile size `auto`
picks (the functions live in genforge.deploy.tiling), half-precision inference. The wrappers (one
per family, registered with genforge.registry.register_wrapper) are used by the CLI, the Python
API, ONNX Runtime and the HTTP service alike."""

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genforge import registry
from genforge.data.io import DEFAULT_MAX_PIXELS
from genforge.deploy.pretrained import ModelSource, build_export_module, read_source
from genforge.deploy.tiling import (  # noqa: F401  (re-exported: the wrappers and tests import them from here)
    AUTO,
    CUDA_BUDGET_FRACTION,
    DEFAULT_MAX_MEMORY,
    MAX_AUTO_TILE,
    MIN_TILE,
    ONNX_CPU_BYTES_PER_PIXEL,
    ONNX_CUDA_TILE,
    PROBE_SIDE,
    LazyImage,
    auto_tile_size,
    bound_heap,
    cuda_available_bytes,
    image_bytes,
    measure_bytes_per_pixel,
    measure_cpu_bytes_per_pixel,
    quantise,
    tiled,
    working_set,
)
from genforge.device import select_device
from genforge.errors import ImageTooLargeError, UserError


def is_onnx(name_or_path) -> bool:
    return str(name_or_path).lower().endswith(".onnx")


def open_model(name_or_path: str, device: str, source=None, *, provider: str | None = None):
    """(source, module, device): the torch network, or for an .onnx file an ONNX Runtime runner
    with the same call signature (tensors in and out on the CPU), so the wrappers serve both
    unchanged. ONNX Runtime's execution provider is `provider`, or cuda when device is 'cuda'
    (an explicit request: a missing CUDA provider is an error, not a silent CPU run), else cpu."""
    if is_onnx(name_or_path) and source is None:
        from genforge.deploy.export import OnnxRunner
        runner = OnnxRunner(name_or_path, provider=provider or ("cuda" if device == "cuda" else "cpu"))
        return ModelSource(runner.name, runner.config, {}), runner, torch.device("cpu")
    if provider is not None:
        raise UserError(f"--provider {provider}: applies to .onnx models only (PyTorch models use --device)")
    source = source or read_source(name_or_path)
    device = select_device(device)
    return source, build_export_module(source, device), device


def family_of_source(source: ModelSource) -> str:
    task = source.config.get("task") if isinstance(source.config, dict) else None
    kind = task.get("kind") if isinstance(task, dict) else None
    if not isinstance(kind, str):
        raise UserError(f"model {source.name!r}: its config names no task")
    return registry.family_of(kind)


def load(name_or_path: str, device: str = "auto", *, provider: str | None = None, half: bool = False):
    """The inference wrapper for a shipped model name, a model folder, a run directory or .onnx file
    (provider, half: see open_model and InferenceWrapper.use_half)."""
    opened = open_model(name_or_path, device, provider=provider)  # read once; the wrapper takes it as it is
    wrapper = registry.wrapper_row(family_of_source(opened[0])).wrapper(name_or_path, opened=opened)
    if half:
        wrapper.use_half()
    return wrapper


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


def half_precision(modules: list[torch.nn.Module], dtype: torch.dtype) -> None:
    """Every module's weights in dtype, its floating inputs cast to dtype on the way in and its
    output back to float32 on the way out: the wrappers' code around the network (padding,
    colour conversion, quantising) stays in float32, and callers the wrappers do not own (the
    sampling loop, a generator pair's inner networks) need no change."""
    def cast_in(_, args):
        return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)

    def cast_out(_, __, out):
        return out.float() if isinstance(out, torch.Tensor) else out

    for module in modules:
        module.to(dtype)
        module.register_forward_pre_hook(cast_in)
        module.register_forward_hook(cast_out)


def read_input(image, reader, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """A path, PIL image or array -> an array, for the Python one-liners. A path is read with the same
    pixel limit as the CLI's --max-pixels (checked from the header, before decoding; None: no limit)."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        try:
            return reader(image, max_pixels=max_pixels)
        except ImageTooLargeError as err:
            raise ImageTooLargeError(f"{err}; pass max_pixels= a larger limit, or None, to read it") from err
    return np.asarray(image)  # a PIL image or an array


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
    default_metrics: tuple[str, ...] | None = None  # what `genforge eval` computes without --metrics (None: all)
    upload_routes: dict[str, int] = {}  # service route -> image files a request may carry (body limit)
    multiple = 1  # the network's size multiple (the tiles' alignment)
    dtype = torch.float32  # the network's, after use_half
    half_dtype = torch.float16  # what --half uses: fp16 keeps 11 significant bits, bf16 only 8
    max_memory: int | None = DEFAULT_MAX_MEMORY
    """CPU budget in bytes for `tile=auto` (--max-memory): the image's arrays in and out plus the
    network's working set on a tile (tiling.working_set); None: whole images on the CPU."""

    def __init__(self, name_or_path: str, device: str = "auto", *, source=None, opened=None):
        self.source, self.module, self.device = opened or open_model(name_or_path, device, source)
        family = family_of_source(self.source)
        if family != self.family:
            raise UserError(f"model {self.source.name!r} is a {family} model, not a {self.noun}{self.hint}")
        self._bytes_per_pixel: dict = {}
        if self.device.type == "cpu":
            bound_heap()  # so that memory freed after a tile is given back (see tiling.bound_heap)

    @classmethod
    def from_options(cls, model: str, args, *, opened=None):
        """The wrapper a command's --device, --provider and --half ask for."""
        if opened is not None and args.provider:
            raise UserError(f"--provider {args.provider}: applies to .onnx models only (PyTorch models use --device)")
        wrapper = cls(model, opened=opened or open_model(model, args.device, provider=args.provider))
        wrapper.max_memory = getattr(args, "max_memory", wrapper.max_memory)
        if args.half:
            wrapper.use_half()
        return wrapper

    def half_modules(self) -> list[torch.nn.Module]:
        """The modules the wrapper calls (a subclass adds e.g. a generator pair's directions)."""
        return [self.module]

    def use_half(self) -> None:
        """Inference in 16-bit floats (half_dtype) on CUDA. Refused on the CPU, where half-precision
        convolutions are slow or missing and would only lose accuracy, and for .onnx files, which run
        in the precision they were exported in."""
        if not isinstance(self.module, torch.nn.Module):
            raise UserError("--half applies to PyTorch models: an .onnx file runs in the float32 it was exported in")
        if self.device.type != "cuda":
            raise UserError("--half needs a CUDA device (on the CPU 16-bit inference is slow and less exact): "
                            "drop --half, or run on a GPU with --device cuda")
        if not getattr(self.module, "supports_half", True):
            raise UserError(f"model {self.source.name!r}: its architecture does not run in 16-bit floats; drop --half")
        dtype = self.half_dtype
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            dtype = torch.float16  # GPUs before Ampere have no bfloat16 convolutions
        half_precision(self.half_modules(), dtype)
        self.dtype = dtype
        self._bytes_per_pixel.clear()

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda" or getattr(self.module, "provider", "cpu") == "cuda"

    def may_tile(self, tile) -> bool:
        """Whether `tile` can cut an image at all (not 0; auto on the CPU only under a budget)."""
        return (self.on_cuda or self.max_memory is not None) if tile == AUTO else bool(tile)

    def bytes_per_pixel(self, run: Callable, channels: int, key=None) -> float:
        """The network's working set per input pixel, measured once per key (input channels or
        direction): peak CUDA memory on CUDA, the tensors it holds at once on the CPU (see
        tiling.measure_cpu_bytes_per_pixel); ONNX Runtime's memory cannot be observed, so on the
        CPU an .onnx file is taken at ONNX_CPU_BYTES_PER_PIXEL."""
        if key not in self._bytes_per_pixel:
            if not isinstance(self.module, torch.nn.Module):
                figure = ONNX_CPU_BYTES_PER_PIXEL
            elif self.device.type == "cuda":
                figure = measure_bytes_per_pixel(run, channels, self.multiple, self.device)
            else:
                figure = measure_cpu_bytes_per_pixel(run, channels, self.multiple)
            self._bytes_per_pixel[key] = figure
        return self._bytes_per_pixel[key]

    def tile_size(self, tile, run: Callable, channels: int, overlap: int, key=None, shape=None,
                  held: int = 0) -> int:
        """What `tile` means here: a number as given; auto on CUDA the largest tile that fits the
        free memory at this network's measured bytes per pixel; auto on the CPU the largest tile
        whose working set fits max_memory less `held` (the image's own arrays, see working_set),
        or 0, the whole image, when the image of `shape` (H, W) fits it whole or max_memory is None."""
        if not self.may_tile(tile):
            return 0
        if tile != AUTO:
            return int(tile)
        if self.on_cuda:
            if not isinstance(self.module, torch.nn.Module):
                return max(self.multiple, ONNX_CUDA_TILE - ONNX_CUDA_TILE % self.multiple)
            return auto_tile_size(cuda_available_bytes(self.device), self.bytes_per_pixel(run, channels, key),
                                  multiple=self.multiple, overlap=overlap)
        per_pixel = self.bytes_per_pixel(run, channels, key)
        budget = working_set(self.max_memory, held)
        if shape is not None:
            h, w = (int(n) + (-int(n)) % self.multiple for n in shape)
            if h * w * per_pixel <= budget:
                return 0
        return auto_tile_size(budget, per_pixel, multiple=self.multiple, overlap=overlap, fraction=1.0)

    def run_tiled(self, run: Callable, x, *, tile, overlap: int, scale: int, peak: int,
                  signed: bool = False, key=None) -> np.ndarray:
        """infer.tiled at the tile `tile` resolves to (x: a C x H x W tensor or a LazyImage). An
        auto tile that still runs out of memory (other processes, an attention block's quadratic
        growth) is halved and the image redone; a tile the user chose is theirs to change, so that
        is one clear error instead."""
        chosen = self.tile_size(tile, run, x.shape[0], overlap, key, shape=x.shape[1:],
                                held=image_bytes(x, scale, peak))
        while True:
            try:
                return tiled(run, x, tile=chosen, overlap=overlap, scale=scale, multiple=self.multiple, peak=peak,
                             signed=signed)
            except torch.OutOfMemoryError:
                chosen = min(chosen or max(x.shape[1:]), max(x.shape[1:])) // 2
                if tile != AUTO or chosen < MIN_TILE:
                    given = {0: "the whole image", AUTO: f"{MIN_TILE}-pixel tiles"}.get(tile, f"--tile {tile}")
                    raise UserError(f"out of memory with {given}: pass a smaller --tile") from None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # outside the except: the failed tile's tensors died with its traceback

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
