"""Image grids of model outputs, for sample files and TensorBoard."""

from pathlib import Path

import numpy as np
import torch

# colours for showing class-id maps (any id 0..254; 255, "don't care", is black)
LABEL_PALETTE = (np.random.default_rng(7).random((256, 3)) * 255).astype(np.uint8)
LABEL_PALETTE[255] = 0


def to_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """images in [-1, 1] (B, C, H, W) -> grid C x H x W in [0, 1]."""
    from torchvision.utils import make_grid  # torchvision's import costs ~2 s: only when a grid is made
    return make_grid(((images.detach().float().cpu() + 1) / 2).clamp(0, 1), nrow=nrow, padding=padding,
                     pad_value=1.0)


def to_uint8(images_or_grid: torch.Tensor) -> np.ndarray:
    """A C x H x W tensor in [0, 1] -> H x W x C uint8."""
    return (images_or_grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    from genforge.data.io import write_image
    write_image(path, to_uint8(to_grid(images, nrow=nrow)))
    return Path(path)
