"""Super-resolution weights from other projects (ESRGAN, Real-ESRGAN, SwinIR, HAT, ...), recognised
by spandrel and run through the same Upscaler as genforge's own models.

The file is read here as plain tensors (safetensors, or torch.load with weights_only=True);
spandrel only receives the state dict, so it never unpickles anything itself."""

import warnings
from pathlib import Path

import torch
from torch import nn

from genforge import checkpoint_files
from genforge.deploy.pretrained import ModelSource
from genforge.device import select_device
from genforge.errors import UserError

SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
# where training code keeps the network's weights inside a checkpoint, best first (BasicSR's EMA
# copy before its raw one; Lightning's state_dict; ...)
WRAPPERS = ("params_ema", "params-ema", "params", "model_state_dict", "state_dict", "model", "net",
            "generator")


class SpandrelSR(nn.Module):
    """Exposes what Upscaler reads from a network (scale, channels, size_multiple) around spandrel's
    descriptor, whose call pads to the architecture's size requirements and clamps to [0, 1]."""

    receptive_radius = None  # unknown: Upscaler then uses its default tile overlap

    def __init__(self, descriptor):
        super().__init__()
        self.descriptor = descriptor
        self.net = descriptor.model  # a registered child, so .to() and .state_dict() reach the weights
        self.scale = int(descriptor.scale)
        self.channels = int(descriptor.input_channels)
        self.size_multiple = int(descriptor.size_requirements.multiple_of)
        self.supports_half = bool(descriptor.supports_half)  # some architectures overflow in float16 (--half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.descriptor(x)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped from the usual training containers."""
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"weights file {path}: unsupported type {suffix or '(no suffix)'} "
                        f"(expected {', '.join(SUFFIXES)})")
    if suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            obj = load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001  (SafetensorError, OSError: a bad file either way)
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise UserError(f"cannot load weights {path}: not a readable safetensors file ({first})") from None
    else:
        obj = checkpoint_files.load(path, what="weights")
    for _ in range(3):  # containers nest, e.g. {"state_dict": {"model": {...}}}
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)} \
        if isinstance(obj, dict) else {}
    if not tensors:
        raise UserError(f"weights file {path} holds no named tensors (not a state dict)")
    return tensors


def load_weights(path, device: str = "auto"):
    """(source, module, device) for a third-party super-resolution weights file, the triple
    `Upscaler(name, opened=...)` accepts."""
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    path, device = Path(path), select_device(device)
    state = read_state_dict(path)
    try:
        with warnings.catch_warnings():  # some architectures call torch.meshgrid without indexing=
            warnings.filterwarnings("ignore", message="torch.meshgrid")
            descriptor = ModelLoader().load_from_state_dict(state)
    except UnsupportedModelError:
        raise UserError(f"spandrel does not recognise the weights in {path}") from None
    except (KeyError, ValueError, RuntimeError, AssertionError, IndexError, TypeError) as err:
        # detected as an architecture, but the tensors do not build it (partial or edited file)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"cannot build a network from the weights in {path}: {first}") from None
    arch = descriptor.architecture.name
    if not isinstance(descriptor, ImageModelDescriptor):
        raise UserError(f"{path} is not a super-resolution model ({arch}: {descriptor.purpose.lower()})")
    if descriptor.scale == 1:
        raise UserError(f"{path} is not a super-resolution model (scale 1)")
    if descriptor.input_channels not in (1, 3) or descriptor.output_channels != descriptor.input_channels:
        raise UserError(f"{path}: a {arch} model with {descriptor.input_channels} input and "
                        f"{descriptor.output_channels} output channels; upscale takes grey or RGB models")
    module = SpandrelSR(descriptor.to(device).eval())
    config = {"model": {"name": f"spandrel:{arch}", "scale": descriptor.scale},
              "task": {"kind": "superres"}}
    return ModelSource(path.name, config, state), module, device
