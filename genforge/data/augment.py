"""Batched, differentiable image augmentation on the training device.

Augmentation runs on whole batches already on the GPU: a per-sample Python loop or a CPU
loader pipeline would cost more than the small models it feeds. Every sample still gets its
own random parameters. All randomness comes from torch's global generator for ``x.device``, so
restoring the RNG state from a checkpoint replays the exact same augmentations on resume.
Being differentiable, it can also augment both real and generated images on the way into a GAN
discriminator (DiffAugment style). It augments in train and eval mode alike; the caller
decides when to apply it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genforge.errors import ConfigError


class Augment(nn.Module):
    """Random flips, crop-and-rescale, translation, brightness, contrast and Gaussian noise.

    Images are float B x C x H x W in [-1, 1]; the output has the same shape, clamped to
    [-1, 1]. With every option off, ``forward`` returns its input unchanged (same object).

    hflip, vflip: mirror each sample with probability 0.5.
    scale_crop: smallest crop area as a fraction of the image (1.0 = off); the crop is resized
        back to the input size.
    translate: largest shift as a fraction of the size; uncovered pixels are reflected.
    brightness: largest additive change.
    contrast: largest relative change of the deviation from each image's mean.
    noise: standard deviation of added Gaussian noise.
    """

    def __init__(
        self,
        *,
        hflip: bool = False,
        vflip: bool = False,
        scale_crop: float = 1.0,
        translate: float = 0.0,
        brightness: float = 0.0,
        contrast: float = 0.0,
        noise: float = 0.0,
    ) -> None:
        super().__init__()
        checks = {
            "scale_crop": (scale_crop, 0.0 < scale_crop <= 1.0, "in (0, 1]"),
            "translate": (translate, 0.0 <= translate < 1.0, "in [0, 1)"),
            "brightness": (brightness, 0.0 <= brightness <= 2.0, "in [0, 2]"),
            "contrast": (contrast, 0.0 <= contrast <= 1.0, "in [0, 1]"),
            "noise": (noise, noise >= 0.0, ">= 0"),
        }
        for key, (value, ok, allowed) in checks.items():
            if not ok:
                raise ConfigError(f"augment.{key} must be {allowed}, got {value}")
        self.hflip, self.vflip = bool(hflip), bool(vflip)
        self.scale_crop, self.translate = float(scale_crop), float(translate)
        self.brightness, self.contrast, self.noise = float(brightness), float(contrast), float(noise)

    @property
    def enabled(self) -> bool:
        return bool(
            self.hflip
            or self.vflip
            or self.scale_crop < 1.0
            or self.translate > 0.0
            or self.brightness > 0.0
            or self.contrast > 0.0
            or self.noise > 0.0
        )

    def extra_repr(self) -> str:
        names = ("hflip", "vflip", "scale_crop", "translate", "brightness", "contrast", "noise")
        defaults = (False, False, 1.0, 0.0, 0.0, 0.0, 0.0)
        return ", ".join(
            f"{n}={getattr(self, n)}" for n, d in zip(names, defaults) if getattr(self, n) != d
        )

    def _uniform(self, x: torch.Tensor, low: float, high: float, *shape: int) -> torch.Tensor:
        """Per-sample parameters, shaped to broadcast over B x C x H x W."""
        r = torch.rand(x.shape[0], *shape, device=x.device, dtype=torch.float32)
        return (low + (high - low) * r).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if x.dim() != 4:
            raise ValueError(f"Augment expects B x C x H x W, got shape {tuple(x.shape)}")
        # Flips by indexing, not by the warp below: they stay exact (bit-identical mirrors).
        if self.hflip:
            x = torch.where(self._uniform(x, 0, 1, 1, 1, 1) < 0.5, x.flip(3), x)
        if self.vflip:
            x = torch.where(self._uniform(x, 0, 1, 1, 1, 1) < 0.5, x.flip(2), x)
        if self.scale_crop < 1.0 or self.translate > 0.0:
            x = self._warp(x)
        if self.brightness > 0.0:
            x = x + self._uniform(x, -self.brightness, self.brightness, 1, 1, 1)
        if self.contrast > 0.0:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * self._uniform(x, 1 - self.contrast, 1 + self.contrast, 1, 1, 1) + mean
        if self.noise > 0.0:
            x = x + self.noise * torch.randn_like(x)
        return x.clamp(-1.0, 1.0)

    def _warp(self, x: torch.Tensor) -> torch.Tensor:
        """Crop and shift in one resampling, so the image is interpolated only once.

        In grid_sample's normalised coordinates ([-1, 1] across the image) a square crop of
        side ``s`` (area s^2) may sit with its centre anywhere in [-(1 - s), 1 - s]; a shift
        by a fraction ``t`` of the size moves it by 2t.
        """
        batch = x.shape[0]
        side = torch.sqrt(self._uniform(x, self.scale_crop, 1.0))
        centre = torch.stack(
            [(1 - side) * self._uniform(x, -1.0, 1.0) for _ in range(2)], dim=1
        )
        if self.translate > 0.0:
            centre = centre + self._uniform(x, -2 * self.translate, 2 * self.translate, 2)
        theta = torch.zeros(batch, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = side
        theta[:, 1, 1] = side
        theta[:, :, 2] = centre
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
