"""PatchGAN discriminators (Isola et al. 2017) and their multi-scale stack (pix2pixHD, SPADE).

A PatchGAN classifies every overlapping patch as real or fake instead of the whole image: the
pixel loss (L1) already gets the low frequencies right, so the adversarial term only has to judge
local texture, and a fully convolutional net does that with few parameters and for any image
size. With n_layers=3 each output logit sees a 70x70 input patch (pix2pix's choice).

The multi-scale version (Wang et al. 2018) runs identical PatchGANs on the image and on 2x, 4x ...
downsampled copies: the coarse ones see global structure at the cost of a small net each.
Intermediate activations are returned for the feature-matching loss of pix2pixHD / SPADE.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from genforge.nn import apply_spectral, norm2d
from genforge.nn.init import init_normal_


class PatchGANConfig(BaseModel):
    """Shape of a (multi-scale) PatchGAN. The defaults are pix2pix's 70x70 PatchGAN."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(64, ge=4, le=256, description="Channels of the first conv; doubled per layer up to 8x.")
    n_layers: int = Field(3, ge=1, le=6, description=(
        "Stride-2 convs; sets the patch size (3: 70x70, as pix2pix)."))
    norm: Literal["batch", "instance", "spectral", "none"] = Field("instance", description=(
        "Normalisation of the inner convs; spectral wraps every conv instead."))
    num_scales: int = Field(1, ge=1, le=4, description=(
        "Discriminators in MultiScaleDiscriminator, each at half the resolution of the previous."))


def patch_unit(cin: int, cout: int, stride: int, norm: str, *, with_norm: bool = True) -> nn.Sequential:
    """4x4 conv -> [norm] -> leaky ReLU 0.2."""
    with_norm = with_norm and norm in ("batch", "instance")
    # a bias before batch/instance norm is cancelled by the mean subtraction
    conv = apply_spectral(nn.Conv2d(cin, cout, 4, stride=stride, padding=1, bias=not with_norm), norm)
    layers = [conv]
    if with_norm:
        layers.append(norm2d(norm, cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class PatchDiscriminator(nn.Module):
    """images (N, in_channels, H, W) -> logits (N, 1, h, w), one per input patch.

    For pix2pix the input is the condition and the image concatenated (in_channels = both)."""

    def __init__(self, in_channels: int, cfg: PatchGANConfig):
        super().__init__()
        widths = [cfg.width * min(2 ** i, 8) for i in range(cfg.n_layers + 1)]
        strides = [2] * cfg.n_layers + [1]
        # no norm on the first layer: it would normalise away the input's colour, as pix2pix
        self.body = nn.ModuleList(
            patch_unit(cin, cout, stride, cfg.norm, with_norm=i > 0)
            for i, (cin, cout, stride) in enumerate(zip([in_channels] + widths[:-1], widths, strides)))
        self.head = apply_spectral(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1), cfg.norm)
        init_normal_(self)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """With return_features, also every layer's activation (for a feature-matching loss)."""
        features = []
        for unit in self.body:
            x = unit(x)
            features.append(x)
        logits = self.head(x)
        return (logits, features) if return_features else logits


class MultiScaleDiscriminator(nn.Module):
    """images -> one (logits, features) pair per scale, finest first."""

    def __init__(self, in_channels: int, cfg: PatchGANConfig):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, cfg) for _ in range(cfg.num_scales))

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        results = []
        for i, disc in enumerate(self.scales):
            if i:
                # count_include_pad=False: the zero padding would darken the border of every scale
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            results.append(disc(x, return_features=True))
        return results
