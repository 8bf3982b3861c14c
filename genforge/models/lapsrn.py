"""LapSRN (Lai et al. 2017): a Laplacian pyramid network that upscales in x2 steps.

Two branches per pyramid level:
  feature extraction    `depth` 3x3 convolutions, then a x2 upsampling of the features, then one
                        conv predicting the residual (the level's Laplacian band);
  image reconstruction  the previous level's image upsampled x2 by a learnable filter
                        (initialised to bilinear, as in the paper) plus that residual.
The features of level s feed level s+1, so coarse levels are reused by fine ones, and every level
is an image that the multi-scale Charbonnier loss supervises (`forward_pyramid`).

Deviations from the paper, each for a reason:
  - features are upsampled with pixel shuffle + ICNR instead of a 4x4 transposed conv, which
    avoids the transposed conv's checkerboard at initialisation;
  - the image upsampler replicates the border before its transposed conv, so it equals bilinear
    interpolation up to the edges (zero padding would darken a one-pixel frame);
  - the residual convs are zero-initialised: the untrained network is exactly that bilinear
    pyramid, not bilinear plus noise.

x3 is not a power of two: the network runs the x4 pyramid and resizes its output to 3x with
bicubic interpolation (0.75x). Its pyramid is then [x2, x3] — the last entry is always the output.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from genforge.nn import PixelShuffleUpsample, SRActivation, activation
from genforge.registry import register_model


class LapSRNConfig(BaseModel):
    """Shape of a LapSRN; the defaults are a CPU-sized version of the paper's (64 wide, depth 10)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["lapsrn"] = "lapsrn"
    scale: Literal[2, 3, 4, 8] = Field(4, description="Upscaling factor; x3 resizes the x4 pyramid's output.")
    channels: Literal[1, 3] = Field(3, description="Image channels: 1 grey (luma), 3 RGB.")
    width: int = Field(32, ge=4, le=512, description="Channels of the feature branch.")
    depth: int = Field(5, ge=1, le=20, description="3x3 convolutions per pyramid level.")
    activation: SRActivation = Field("leaky_relu", description="Activation of the feature branch (0.2 slope).")


class BilinearUpsample2x(nn.Module):
    """Per-channel learnable x2 upsampling, initialised to bilinear (align_corners=False)."""

    def __init__(self, channels: int):
        super().__init__()
        # padding 3 on the 1-pixel replicated border gives exactly 2x the unpadded size
        self.conv = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=3, groups=channels, bias=False)
        taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
        with torch.no_grad():
            self.conv.weight.copy_((taps[:, None] * taps[None, :]).expand(channels, 1, 4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate"))


class PyramidLevel(nn.Module):
    """(features, image) at scale s -> (features, image) at scale 2s."""

    def __init__(self, cfg: LapSRNConfig):
        super().__init__()
        layers = []
        for _ in range(cfg.depth):
            layers += [nn.Conv2d(cfg.width, cfg.width, 3, padding=1), activation(cfg.activation)]
        self.features = nn.Sequential(*layers)
        self.upsample = PixelShuffleUpsample(cfg.width, 2, activation=cfg.activation)
        self.to_residual = nn.Conv2d(cfg.width, cfg.channels, 3, padding=1)
        nn.init.zeros_(self.to_residual.weight)
        nn.init.zeros_(self.to_residual.bias)
        self.image_upsample = BilinearUpsample2x(cfg.channels)

    def forward(self, feat: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.upsample(self.features(feat))
        return feat, self.image_upsample(image) + self.to_residual(feat)


def lapsrn_receptive_radius(cfg: LapSRNConfig) -> int:
    """Analytic radius (input pixels) of one output pixel's receptive field, an upper bound:
    each 3x3 conv reaches one pixel of its own grid, which is 2**-level input pixels; a sub-pixel
    may sit a quarter of its parent pixel off centre; the final 0.75x bicubic (x3) reaches 2
    pixels of the x4 grid."""
    r, spacing = 1.0, 1.0  # input conv
    for _ in range(int(math.log2(cfg.scale if cfg.scale != 3 else 4))):
        r += (cfg.depth + 1) * spacing + spacing / 4  # features, upsampler conv, sub-pixel offset
        spacing /= 2
        r += spacing  # residual conv on the finer grid
    if cfg.scale == 3:
        r += 2 * spacing
    return math.ceil(r - 1e-9)


@register_model("lapsrn", LapSRNConfig, tiny={"scale": 2, "width": 8, "depth": 1})
class LapSRN(nn.Module):
    """lr (B, C, H, W) in [0, 1] -> sr (B, C, scale*H, scale*W), not clamped; any H, W."""

    def __init__(self, cfg: LapSRNConfig):
        super().__init__()
        self.scale, self.channels = cfg.scale, cfg.channels
        self.size_multiple = 1
        self.receptive_radius = lapsrn_receptive_radius(cfg)
        self.head = nn.Sequential(nn.Conv2d(cfg.channels, cfg.width, 3, padding=1), activation(cfg.activation))
        n_levels = int(math.log2(4 if cfg.scale == 3 else cfg.scale))
        self.levels = nn.ModuleList(PyramidLevel(cfg) for _ in range(n_levels))

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images at x2, x4, ... up to `scale` (for x3: [x2, x3]); the last one is `forward(x)`."""
        feat, image = self.head(x - 0.5), x  # centred features input, as in ISRNet
        images = []
        for level in self.levels:
            feat, image = level(feat, image)
            images.append(image)
        if self.scale == 3:
            # 0.75 is exact in binary, so the output is exactly 3H x 3W
            images[-1] = F.interpolate(images[-1], scale_factor=0.75, mode="bicubic", align_corners=False)
        return images

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_pyramid(x)[-1]
