"""The weight initialisation of the pix2pix / CycleGAN code, shared by the translation networks.

PyTorch's default (Kaiming-uniform) starts deep generators with large activations; N(0, 0.02)
starts every network near a small, smooth function, which is what the published GAN training
schedules were tuned from. Batch norm scales start at 1 + N(0, 0.02) as in pix2pix."""

import torch
from torch import nn
from torch.nn.utils import parametrize

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


@torch.no_grad()
def _refresh_spectral(module: nn.Module, iterations: int = 15) -> None:
    """Spectral norm estimated its power-iteration vectors from the old weight when it was applied;
    a forward in training mode runs one iteration, and 15 is what spectral_norm does on creation."""
    original = module.parametrizations.weight.original
    for p in module.parametrizations.weight:
        if hasattr(p, "_u"):
            mode = p.training
            p.train()
            for _ in range(iterations):
                p(original)
            p.train(mode)


def init_normal_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Re-initialise `module` in place: conv and linear weights N(0, std), biases 0, batch norm
    scales N(1, std); returns it. Works under spectral norm (initialises the raw weight)."""
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            if parametrize.is_parametrized(m, "weight"):
                nn.init.normal_(m.parametrizations.weight.original, 0.0, std)
                _refresh_spectral(m)
            else:
                nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module
