"""Shared building blocks; models import from here, never from each other."""

from genforge.nn.activations import ACTIVATIONS, ActivationName, SRActivation, activation
from genforge.nn.norms import NORMS, apply_spectral, norm2d

__all__ = ["ACTIVATIONS", "ActivationName", "SRActivation", "activation", "NORMS", "norm2d", "apply_spectral"]

# super-resolution blocks, and the upsamplers the translation generators share with them
from genforge.nn.nonlocal_block import NonLocalBlock  # noqa: E402
from genforge.nn.residual import ResidualBlock  # noqa: E402
from genforge.nn.upsample import (  # noqa: E402
    UPSAMPLE_HELP,
    PixelShuffleUpsample,
    UpsampleName,
    icnr_,
    reinit_icnr_,
    upsample_layer,
)

__all__ += ["ResidualBlock", "NonLocalBlock", "PixelShuffleUpsample", "icnr_", "reinit_icnr_", "upsample_layer",
            "UpsampleName", "UPSAMPLE_HELP"]
