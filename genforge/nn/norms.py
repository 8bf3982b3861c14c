"""Normalisation layers by name. "spectral" is not a layer but a reparametrisation of the
preceding convolution, so models ask `apply_spectral` to wrap their convolutions."""

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
