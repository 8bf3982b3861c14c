"""The Pix2Pix U-Net generator (Isola et al. 2017) for paired image-to-image translation.

An encoder of stride-2 4x4 convolutions halves the image down to a 1x1 bottleneck at the
configured `image_size`; a decoder of stride-2 4x4 transposed convolutions (pix2pix's; `upsample`
selects a checkerboard-free resize-conv or ICNR pixel shuffle instead) doubles it back, and every
decoder level concatenates the encoder features of its resolution. In translation the
input and output share their layout (edges stay where they are), so the skips carry that
layout across and the bottleneck only has to decide what changes.

    x -> d0 -> d1 -> ... -> d(depth-1) (1x1 at image_size, no norm)
         |     |                 | up
         |     +---------- cat <-+ ... up (dropout on the 3 levels above the innermost)
         +---------------- cat -> up -> tanh

As in pix2pix: leaky ReLU 0.2 in the encoder, a plain activation in the decoder, no norm on the
outermost layers and the innermost down conv (instance statistics of a 1x1 map are undefined),
and dropout as the generator's noise source. Pix2pix keeps dropout on at test time; here it
follows train()/eval(), so evaluated and exported outputs are deterministic.
Channels double per level up to 8 * width (and `max_width`), pix2pix's 64..512.

Other image sizes than `image_size` work if they are multiples of 2**depth (the bottleneck is
then larger than 1x1; non-square inputs give a non-square bottleneck).
"""

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from genforge.nn import UPSAMPLE_HELP, ActivationName, UpsampleName, activation, norm2d, reinit_icnr_, upsample_layer
from genforge.nn.init import init_normal_
from genforge.registry import register_model


class UNetConfig(BaseModel):
    """Shape of a Pix2Pix U-Net generator. The defaults are pix2pix's unet_256."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["unet"] = "unet"
    in_channels: int = Field(3, ge=1, le=64, description="Input channels (image or label map).")
    out_channels: int = Field(3, ge=1, le=4, description="Output image channels.")
    image_size: int = Field(256, description=(
        "Training side, a power of two in 16..1024: log2(image_size) down-sampling levels make the "
        "bottleneck 1x1 at this size. Inputs must be multiples of it."))
    bottleneck: int = Field(1, ge=1, le=64, description=(
        "Bottleneck side at image_size (a power of two): 1 is pix2pix; larger stops the down-sampling "
        "earlier, so the network stays local and behaves the same on inputs larger than image_size."))
    width: int = Field(64, ge=4, le=256, description="Channels of the first level (pix2pix's ngf).")
    max_width: int = Field(512, ge=4, le=2048, description=(
        "Cap on channels; below it they double per level up to 8 * width, as pix2pix."))
    norm: Literal["batch", "instance", "none"] = Field("batch", description="Normalisation of inner layers.")
    dropout: float = Field(0.5, ge=0.0, le=0.9, description=(
        "Dropout on the 3 decoder levels above the innermost (pix2pix), in train mode only."))
    activation: ActivationName = Field("relu", description="Decoder activation; the encoder uses leaky_relu 0.2.")
    # the default stays pix2pix's: model folders saved before this key existed hold transposed weights
    upsample: UpsampleName = Field("transposed", description=UPSAMPLE_HELP)

    @field_validator("image_size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v < 16 or v > 1024 or v & (v - 1):
            raise ValueError(f"must be a power of two between 16 and 1024 (got {v}): the U-Net halves it "
                             "down to a 1x1 bottleneck")
        return v

    @field_validator("bottleneck")
    @classmethod
    def _bottleneck_power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"must be a power of two (got {v})")
        return v

    @model_validator(mode="after")
    def _leaves_levels(self):
        if self.image_size // self.bottleneck < 4:
            raise ValueError(f"bottleneck {self.bottleneck} leaves fewer than 2 levels at image_size "
                             f"{self.image_size}")
        return self

    @property
    def depth(self) -> int:
        return int(math.log2(self.image_size // self.bottleneck))

    def level_widths(self) -> list[int]:
        """Output channels of the down convs, from full resolution to the bottleneck."""
        return [min(self.width * 2 ** min(i, 3), self.max_width) for i in range(self.depth)]


def down_block(cin: int, cout: int, norm: str, *, outermost: bool, innermost: bool) -> nn.Sequential:
    """[leaky ReLU] -> stride-2 4x4 conv -> [norm]. The activation opens the next block so that
    one encoder output serves both the skip and the next level; not in place, as the skip reuses it."""
    with_norm = not (outermost or innermost) and norm != "none"
    layers = [] if outermost else [nn.LeakyReLU(0.2)]
    # a bias before batch/instance norm is cancelled by the mean subtraction
    layers.append(nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=not with_norm))
    if with_norm:
        layers.append(norm2d(norm, cout))
    return nn.Sequential(*layers)


def up_block(cin: int, cout: int, norm: str, act: str, dropout: float, upsample: str = "transposed") -> nn.Sequential:
    """activation -> x2 upsampling (stride-2 4x4 transposed conv in pix2pix) -> [norm] -> [dropout]."""
    with_norm = norm != "none"
    layers = [activation(act), upsample_layer(upsample, cin, cout, bias=not with_norm)]
    if with_norm:
        layers.append(norm2d(norm, cout))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


@register_model("unet", UNetConfig, tiny={"image_size": 16, "width": 4})
class UNetGenerator(nn.Module):
    """x (N, in_channels, H, W) in [-1, 1] -> (N, out_channels, H, W) in [-1, 1].

    H and W must be multiples of `size_multiple` = 2**depth = image_size / bottleneck."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.in_channels, self.out_channels = cfg.in_channels, cfg.out_channels
        self.size_multiple = 2 ** cfg.depth
        widths = cfg.level_widths()
        depth = len(widths)

        self.down = nn.ModuleList(
            down_block(cin, cout, cfg.norm, outermost=i == 0, innermost=i == depth - 1)
            for i, (cin, cout) in enumerate(zip([cfg.in_channels] + widths[:-1], widths)))
        # decoder, innermost first: level k maps resolution of d(depth-1-k) to that of d(depth-2-k);
        # every level but the innermost reads its input concatenated with the matching skip
        self.up = nn.ModuleList(
            up_block(widths[i] * (1 if k == 0 else 2), widths[i - 1], cfg.norm, cfg.activation,
                     cfg.dropout if 1 <= k <= 3 else 0.0, cfg.upsample)
            for k, i in enumerate(range(depth - 1, 0, -1)))
        self.to_image = nn.Sequential(
            activation(cfg.activation),
            upsample_layer(cfg.upsample, 2 * widths[0], cfg.out_channels),
            nn.Tanh())
        reinit_icnr_(init_normal_(self), std=0.02)  # pixel_shuffle starts checkerboard-free

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:  # a shape check, not a value one: fine for export
            raise ValueError(f"UNetGenerator input height and width must be multiples of {m} (2**depth), "
                             f"got {tuple(x.shape[-2:])}: pad the input")
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
        h = skips.pop()  # the bottleneck is no skip
        for up in self.up:
            h = torch.cat([up(h), skips.pop()], dim=1)
        return self.to_image(h)
