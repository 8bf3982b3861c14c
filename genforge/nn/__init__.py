"""Shared building blocks; models import from here, never from each other."""

from genforge.nn.activations import ACTIVATIONS, activation
from genforge.nn.norms import NORMS, apply_spectral, norm2d

__all__ = ["ACTIVATIONS", "activation", "NORMS", "norm2d", "apply_spectral"]
