"""The CycleGAN ResNet generator (Johnson et al. 2016, as used by Zhu et al. 2017).

A 7x7 stem, `n_down` stride-2 convs, a stack of residual blocks at 1/2**n_down resolution,
`n_down` x2 upsampling layers back (transposed convs in CycleGAN; `upsample` selects a
checkerboard-free resize-conv or ICNR pixel shuffle) and a 7x7 output conv. Unpaired translation (horse -> zebra)
changes texture and colour but keeps the geometry, which residual blocks at a coarse resolution
express as "the input plus a correction" with a wide receptive field; unlike the U-Net there are no
skips at full resolution, so the network cannot simply copy the input through.

Reflection padding instead of zeros on every spatial conv: zero padding paints a dark frame that
the discriminator learns to look for, and the generator then learns to draw it (CycleGAN's
border artefacts). CycleGAN uses 6 blocks for 128px training images and 9 for 256px.
"""

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from genforge.nn import UPSAMPLE_HELP, ActivationName, UpsampleName, activation, norm2d, reinit_icnr_, upsample_layer
from genforge.nn.init import init_normal_
from genforge.nn.tone_curve import ToneCurve
from genforge.registry import register_model


class ResNetGenConfig(BaseModel):
    """Shape of a CycleGAN ResNet generator. The defaults are CycleGAN's resnet_9blocks."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["resnet"] = "resnet"
    in_channels: int = Field(3, ge=1, le=64, description="Input channels.")
    out_channels: int = Field(3, ge=1, le=4, description="Output image channels.")
    width: int = Field(64, ge=4, le=256, description="Channels at full resolution (ngf); doubled per down step.")
    n_blocks: int = Field(9, ge=1, le=16, description="Residual blocks (CycleGAN: 6 for 128px, 9 for 256px).")
    n_down: int = Field(2, ge=1, le=4, description=(
        "Stride-2 down (and up) steps; inputs must be multiples of 2**n_down."))
    norm: Literal["batch", "instance", "none"] = Field("instance", description=(
        "Normalisation after every conv but the last."))
    activation: ActivationName = Field("relu", description="Activation after every normalised conv.")
    dropout: float = Field(0.0, ge=0.0, le=0.9, description="Dropout between the two convs of each residual block.")
    # the default stays CycleGAN's: model folders saved before this key existed hold transposed weights
    upsample: UpsampleName = Field("transposed", description=UPSAMPLE_HELP.replace(
        "ConvTranspose2d", "ConvTranspose2d kernel 3 stride 2"))
    input_skip: bool = Field(False, description=(
        "Global residual: output = tanh(atanh(input) + correction), the output conv zero-initialised, so the "
        "generator starts as the identity and learns only the change (colour and texture edits that keep the "
        "geometry, where the unpaired losses otherwise let colours drift). Needs in_channels == out_channels."))
    tone_curve: int = Field(0, ge=0, le=256, description=(
        "Knots of a learned tone curve per output channel applied last (a piecewise-linear 1D LUT, identity at "
        "the start; 0 = off): flat levels and sharp steps of a pixel's value (posterising, thresholds) that "
        "convolutions do not learn in practice. 64 resolves steps of 1/32 of the range."))

    @model_validator(mode="after")
    def _skip_fits(self):
        if self.input_skip and self.in_channels != self.out_channels:
            raise ValueError(f"model.input_skip needs in_channels == out_channels, got {self.in_channels} and "
                             f"{self.out_channels}")
        return self


def conv_norm_act(cin: int, cout: int, kernel: int, norm: str, act: str, *, stride: int = 1,
                  upsample: str | None = None) -> nn.Sequential:
    """conv -> [norm] -> activation; with `upsample` the conv is that x2 upsampling layer instead
    (transposed: kernel 3, output_padding 1, which exactly doubles the size)."""
    with_norm = norm != "none"
    # a bias before batch/instance norm is cancelled by the mean subtraction
    if upsample is not None:
        conv = upsample_layer(upsample, cin, cout, bias=not with_norm, padding_mode="reflect", transposed_kernel=3)
    else:
        conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, padding_mode="reflect",
                         bias=not with_norm)
    return nn.Sequential(conv, norm2d(norm, cout) if with_norm else nn.Identity(), activation(act))


class ResNetBlock(nn.Module):
    """x -> x + norm(conv3x3(dropout(act(norm(conv3x3(x)))))), reflect-padded; keeps the shape.
    No activation after the sum, as CycleGAN: the identity path stays linear."""

    def __init__(self, channels: int, norm: str, act: str, dropout: float = 0.0):
        super().__init__()
        with_norm = norm != "none"
        layers = [conv_norm_act(channels, channels, 3, norm, act)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect", bias=not with_norm))
        if with_norm:
            layers.append(norm2d(norm, channels))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_model("resnet", ResNetGenConfig, tiny={"width": 4, "n_blocks": 1, "n_down": 2})
class ResNetGenerator(nn.Module):
    """x (N, in_channels, H, W) in [-1, 1] -> (N, out_channels, H, W) in [-1, 1].

    H and W must be multiples of `size_multiple` = 2**n_down."""

    def __init__(self, cfg: ResNetGenConfig):
        super().__init__()
        self.in_channels, self.out_channels = cfg.in_channels, cfg.out_channels
        self.size_multiple = 2 ** cfg.n_down
        widths = [cfg.width * 2 ** i for i in range(cfg.n_down + 1)]
        norm, act = cfg.norm, cfg.activation
        self.stem = conv_norm_act(cfg.in_channels, widths[0], 7, norm, act)
        self.down = nn.Sequential(*(conv_norm_act(cin, cout, 3, norm, act, stride=2)
                                    for cin, cout in zip(widths[:-1], widths[1:])))
        self.blocks = nn.Sequential(*(ResNetBlock(widths[-1], norm, act, cfg.dropout) for _ in range(cfg.n_blocks)))
        self.up = nn.Sequential(*(conv_norm_act(cin, cout, 3, norm, act, upsample=cfg.upsample)
                                  for cin, cout in zip(widths[:0:-1], widths[-2::-1])))
        self.input_skip = cfg.input_skip  # then the tanh comes after the sum with the input, in forward
        self.to_image = nn.Sequential(nn.Conv2d(widths[0], cfg.out_channels, 7, padding=3, padding_mode="reflect"),
                                      nn.Identity() if cfg.input_skip else nn.Tanh())
        reinit_icnr_(init_normal_(self), std=0.02)  # pixel_shuffle starts checkerboard-free
        if cfg.input_skip:  # a zero correction: the generator starts as the identity
            nn.init.zeros_(self.to_image[0].weight)
            nn.init.zeros_(self.to_image[0].bias)
        self.tone_curve = ToneCurve(cfg.out_channels, cfg.tone_curve) if cfg.tone_curve else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:  # a shape check, not a value one: fine for export
            raise ValueError(f"ResNetGenerator input height and width must be multiples of {m} (2**n_down), "
                             f"got {tuple(x.shape[-2:])}: pad the input")
        out = self.to_image(self.up(self.blocks(self.down(self.stem(x)))))
        if self.input_skip:  # atanh written out (ONNX has no exporter for aten::atanh), clamped to stay finite
            x = x.clamp(-0.999, 0.999)
            out = torch.tanh(out + 0.5 * torch.log((1 + x) / (1 - x)))
        return self.tone_curve(out)
