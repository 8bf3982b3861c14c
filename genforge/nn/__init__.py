"""Shared building blocks; models import from here, never from each other."""

from genforge.nn.activations import ACTIVATIONS, ActivationName, SRActivation, activation
from genforge.nn.norms import NORMS, apply_spectral, norm2d

__all__ = ["ACTIVATIONS", "ActivationName", "SRActivation", "activation", "NORMS", "norm2d", "apply_spectral"]

# super-resolution blocks
from genforge.nn.nonlocal_block import NonLocalBlock  # noqa: E402
from genforge.nn.residual import ResidualBlock  # noqa: E402
from genforge.nn.upsample import PixelShuffleUpsample, icnr_  # noqa: E402

__all__ += ["ResidualBlock", "NonLocalBlock", "PixelShuffleUpsample", "icnr_"]
