"""Normalisation layers by name. "spectral" is not a layer but a reparametrisation of the
preceding convolution, so models ask `apply_spectral` to wrap their convolutions.

SPADE (Park et al. 2019) is here too: a normalisation whose scale and shift come from a label map."""

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "instance", "spectral", "none")


def norm2d(name: str, channels: int) -> nn.Module:
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if name in ("spectral", "none"):
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; choose one of {', '.join(NORMS)}")


def apply_spectral(module: nn.Module, norm: str) -> nn.Module:
    """Wrap `module` in spectral normalisation when `norm` asks for it."""
    return nn.utils.parametrizations.spectral_norm(module) if norm == "spectral" else module


@torch.no_grad()
def fold_spectral_(module: nn.Module) -> nn.Module:
    """Replace every spectrally normalised weight in `module` by its current value W / sigma, in
    place, for inference and export: the parametrization's power iteration (aten::vdot) has no
    ONNX operator, and a deployed network never updates sigma anyway. Returns `module`."""
    for m in list(module.modules()):
        if nn.utils.parametrize.is_parametrized(m, "weight"):
            m.parametrizations.weight.eval()  # the eval value: no power-iteration step while folding
            nn.utils.parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: normalise x without parameters, then modulate it with a
    per-pixel scale and shift predicted from the label map.

    A plain affine norm applied to a mostly uniform label map (one class per region) would wash the
    layout out of the features; predicting gamma and beta from the map at every layer re-injects it.
    The label map may have any resolution: it is resized (nearest, so classes stay one-hot) to x."""

    def __init__(self, channels: int, label_nc: int, hidden: int = 128, param_free: str = "instance"):
        super().__init__()
        if param_free == "instance":
            self.norm = nn.InstanceNorm2d(channels, affine=False)
        elif param_free == "batch":
            self.norm = nn.BatchNorm2d(channels, affine=False)
        else:
            raise ValueError(f"unknown parameter-free norm {param_free!r}; choose instance or batch")
        self.shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU(inplace=True))
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, label_map: torch.Tensor) -> torch.Tensor:
        # always resized, even at equal size: a traced (ONNX) graph must not bake in a size test
        label_map = F.interpolate(label_map, size=x.shape[-2:], mode="nearest")
        h = self.shared(label_map)
        # 1 + gamma: a zero gamma leaves the normalised features unscaled rather than zeroed
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)
