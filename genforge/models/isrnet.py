"""ISRNet: this project's super-resolution network, a residual U-Net with sub-pixel upsampling.

An encoder turns the low-resolution image into abstract features at 1, 1/2, 1/4 ... of its
resolution; a decoder maps them back up, fusing the encoder features of the matching level
(U-Net skip connections), and a pixel-shuffle upsampler plus one convolution paint the
high-resolution residual. That residual is added to a bicubic upscale of the input (global
residual, as in VDSR), so the network only learns the missing detail and starts as bicubic: the
output convolution is zero-initialised.

    lr -> head -> enc0 -+-> down -> enc1 -+-> down -> bottleneck [+ non-local] -> up -+
                        |                 +--------------------------- cat, fuse, dec1 <-+
                        |                                                   | up
                        +-------------------------------------------------> cat, fuse, dec0
                                                                            | upsampler, tail
    lr -> bicubic x scale ------------------------------------------------> + -> sr

Why a U-Net rather than EDSR's flat stack: a residual block at level l costs 1/4**l of a
full-resolution one per input pixel, so the coarse levels buy receptive field (and the bottleneck
a place for global attention) cheaply. The finest level still holds two blocks on each side, so
high-frequency detail never has to pass through the strided path. Measured (x2, 128x128 RGB, one
CPU thread): the default preset (0.29 M parameters) runs in 58 ms, a flat 32-channel EDSR-like
stack of the same size (14 blocks) in 110 ms and one of 8 blocks (0.19 M) in 74 ms.

Two numbers for deployment:
  size_multiple     input height and width must be multiples of 2**levels (each level halves the
                    resolution with a stride-2 convolution and the decoder doubles it back); the
                    inference wrapper pads to it and crops the output.
  receptive_radius  the analytic radius, in input pixels, of the convolutional receptive field of
                    one output pixel (upper bound; `measure_receptive_radius` checks it
                    empirically). Tiles read with at least this overlap give the untiled result.
                    With `nonlocal_block` the attention is global, so tiling is only close to,
                    not equal to, the untiled result; the radius still covers the convolutions.
"""

import copy
import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from genforge.nn import NonLocalBlock, PixelShuffleUpsample, ResidualBlock, SRActivation
from genforge.registry import register_model


class ISRNetConfig(BaseModel):
    """Shape of an ISRNet. The defaults are the CPU preset (~0.29 M parameters at x2)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["isrnet"] = "isrnet"
    scale: Literal[2, 3, 4] = Field(2, description="Upscaling factor.")
    channels: Literal[1, 3] = Field(3, description="Image channels: 1 grey (luma), 3 RGB.")
    width: int = Field(32, ge=4, le=512, description="Channels at the input resolution.")
    max_width: int = Field(32, ge=4, le=1024, description=(
        "Cap on channels: each level doubles the width up to this. The default (= width) keeps every "
        "level at 32 channels, which is what fits ~0.3 M parameters; 64 gives a 32/64/64 net of ~0.8 M."))
    levels: int = Field(2, ge=0, le=5, description=(
        "Encoder downsampling levels; each halves the resolution, so inputs must be multiples of "
        "2**levels. 0 = a flat EDSR-like network."))
    blocks_per_level: int = Field(2, ge=0, le=16, description="Residual blocks per level, in encoder and decoder.")
    bottleneck_blocks: int = Field(4, ge=0, le=64, description="Residual blocks at the coarsest level.")
    activation: SRActivation = Field("relu", description=(
        "Activation inside residual blocks; sigmoid and tanh are selectable for comparison only."))
    nonlocal_block: bool = Field(False, description="Add a non-local (self-attention) block at the bottleneck.")
    res_scale: float = Field(1.0, gt=0.0, le=1.0, description="Residual branch scaling (EDSR uses 0.1 for wide nets).")

    def level_widths(self) -> list[int]:
        """Channels at level 0 (input resolution) ... level `levels` (bottleneck)."""
        return [min(self.width * 2 ** i, self.max_width) for i in range(self.levels + 1)]


def residual_stack(channels: int, n: int, cfg: ISRNetConfig) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlock(channels, cfg.activation, cfg.res_scale) for _ in range(n)])


def conv_receptive_radius(cfg: ISRNetConfig) -> int:
    """Analytic radius (input pixels) of the receptive field of one output pixel, an upper bound.

    Every 3x3 convolution at level l reaches 2**l input pixels further. A stride-2 3x3 conv
    followed, after the coarser levels, by a pixel-shuffle x2 maps a coarse radius r to 2r + 2
    fine pixels (the conv adds one, and a fine pixel may sit at the far side of its coarse
    parent). 1x1 convolutions and the skip paths add nothing beyond the deepest path."""
    r = 2.0 * cfg.bottleneck_blocks
    for _ in range(cfg.levels):
        r = 2 * cfg.blocks_per_level + (2 * r + 2) + 2 * cfg.blocks_per_level
    r += 1  # head
    spacing = 1.0  # of the current feature grid, in input pixels
    for s in ([2, 2] if cfg.scale == 4 else [cfg.scale]):
        r += spacing  # the upsampler's 3x3 conv
        r += spacing * (s - 1) / (2 * s)  # a sub-pixel's centre is off its parent's centre
        spacing /= s
    r += spacing  # output 3x3 conv at high resolution
    return max(math.ceil(r - 1e-9), 2)  # 2: the bicubic kernel of the global residual


@register_model("isrnet", ISRNetConfig, tiny={"width": 8, "max_width": 8, "levels": 1, "blocks_per_level": 1,
                                            "bottleneck_blocks": 1})
class ISRNet(nn.Module):
    """lr (B, C, H, W) in [0, 1] -> sr (B, C, scale*H, scale*W), not clamped.

    H and W must be multiples of `size_multiple` = 2**levels."""

    ENCODER = ("head", "enc_blocks", "downsample", "bottleneck")
    DECODER = ("up", "fuse", "dec_blocks", "upsampler", "tail")

    def __init__(self, cfg: ISRNetConfig):
        super().__init__()
        self.scale, self.channels = cfg.scale, cfg.channels
        self.size_multiple = 2 ** cfg.levels
        self.receptive_radius = conv_receptive_radius(cfg)
        widths = cfg.level_widths()

        # encoder: everything up to and including the bottleneck
        self.head = nn.Conv2d(cfg.channels, widths[0], 3, padding=1)
        self.enc_blocks = nn.ModuleList(residual_stack(w, cfg.blocks_per_level, cfg) for w in widths[:-1])
        self.downsample = nn.ModuleList(nn.Conv2d(cin, cout, 3, stride=2, padding=1)
                                        for cin, cout in zip(widths[:-1], widths[1:]))
        bottleneck = list(residual_stack(widths[-1], cfg.bottleneck_blocks, cfg))
        if cfg.nonlocal_block:  # in the middle, so that blocks after it can use what it gathered
            bottleneck.insert(len(bottleneck) // 2, NonLocalBlock(widths[-1]))
        self.bottleneck = nn.Sequential(*bottleneck)

        # decoder: everything after the bottleneck, listed from the coarsest level to the finest
        fine = widths[:-1][::-1]
        coarse = widths[1:][::-1]
        # a 1x1 conv + pixel shuffle = U-Net's 2x2 "up-conv", at a quarter of a 3x3's parameters
        self.up = nn.ModuleList(PixelShuffleUpsample(cin, 2, out_channels=cout, kernel_size=1)
                                for cin, cout in zip(coarse, fine))
        self.fuse = nn.ModuleList(nn.Conv2d(2 * w, w, 1) for w in fine)
        self.dec_blocks = nn.ModuleList(residual_stack(w, cfg.blocks_per_level, cfg) for w in fine)
        self.upsampler = PixelShuffleUpsample(widths[0], cfg.scale)
        self.tail = nn.Conv2d(widths[0], cfg.channels, 3, padding=1)
        # zero: the network starts as exactly bicubic; the first step trains the tail, later
        # steps everything (a random tail would add noise that training must first remove)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def _parts(self, names: tuple[str, ...]):
        for name in names:
            yield from getattr(self, name).parameters()

    def encoder_parameters(self):
        """Head, encoder levels, downsampling convs and bottleneck (with its non-local block)."""
        return self._parts(self.ENCODER)

    def decoder_parameters(self):
        """Everything after the bottleneck: decoder levels, upsampler and output conv. Adversarial
        fine-tuning trains only these, so the encoder's features stay those learned for fidelity."""
        return self._parts(self.DECODER)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:  # a shape check, not a value one: fine for export
            raise ValueError(f"ISRNet input height and width must be a multiple of {m} (2**levels), "
                             f"got {tuple(x.shape[-2:])}: pad the input (the Upscaler does)")
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        h = self.head(x - 0.5)  # centred input: the conv bias need not learn the 0.5 offset
        skips = []
        for blocks, down in zip(self.enc_blocks, self.downsample):
            h = blocks(h)
            skips.append(h)
            h = down(h)
        h = self.bottleneck(h)
        for up, fuse, blocks, skip in zip(self.up, self.fuse, self.dec_blocks, reversed(skips)):
            h = blocks(fuse(torch.cat([up(h), skip], dim=1)))
        return base + self.tail(self.upsampler(h))


@torch.no_grad()
def _centre_distance(grad: torch.Tensor, scale: int, centre: int) -> float:
    rows, cols = torch.nonzero(grad, as_tuple=True)
    at = (centre + 0.5) / scale - 0.5  # the output pixel's centre in input-pixel coordinates
    return float(torch.maximum((rows - at).abs(), (cols - at).abs()).max())


def measure_receptive_radius(model: nn.Module, probe: int | None = None) -> int:
    """Empirical receptive-field radius in input pixels: the gradient of the centre output pixel
    with respect to a random probe image, in float64, is non-zero exactly on the input pixels it
    depends on; returns the farthest one's distance (Chebyshev, rounded up).

    Measure a trained model: on a freshly initialised ISRNet the zero output conv blocks every
    path but the bicubic one (radius 2). `probe` (square side, default 2 * analytic radius + 8,
    rounded up to the size multiple) must exceed the field: a field that reaches the border
    raises ValueError (e.g. with a trained non-local block, whose field is the whole image)."""
    multiple = int(getattr(model, "size_multiple", 1))
    if probe is None:
        probe = 2 * int(getattr(model, "receptive_radius", 32)) + 8
    probe += (-probe) % multiple
    net = copy.deepcopy(model).double().eval()
    x = torch.rand(1, model.channels, probe, probe, dtype=torch.float64, requires_grad=True)
    y = net(x)
    centre = y.shape[-1] // 2
    y[0, :, centre, centre].sum().backward()
    grad = x.grad[0].abs().sum(0)
    if grad[0].any() or grad[-1].any() or grad[:, 0].any() or grad[:, -1].any():
        raise ValueError(f"the receptive field reaches the border of the {probe}x{probe} probe: use a larger probe")
    return math.ceil(_centre_distance(grad, model.scale, centre) - 1e-9)
