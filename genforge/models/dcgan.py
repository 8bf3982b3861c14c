"""DCGAN-style generator and discriminator (Radford et al. 2016), optionally class-conditional.

Conditioning follows the auxiliary-information recipe: the generator receives a learned label
embedding concatenated with z; the discriminator scores with a projection term <embed(y), h>
(Miyato & Koyama 2018), which keeps the conditional signal strong without an extra classifier head.
"""

import math
from typing import Annotated, Literal

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from torch import nn

from genforge.nn import activation, apply_spectral, norm2d
from genforge.registry import register_model

Activation = Literal["relu", "leaky_relu", "elu", "tanh", "sigmoid", "prelu", "gelu", "silu"]
Norm = Literal["batch", "instance", "spectral", "none"]


def power_of_two_side(largest: int):
    """The type of an image-side field: a power of two from 8 to `largest` (the strided convolutions
    halve it down to 4x4)."""
    def check(v: int) -> int:
        if v < 8 or v > largest or v & (v - 1):
            raise ValueError(f"must be a power of two between 8 and {largest}")
        return v
    return Annotated[int, AfterValidator(check)]


ImageSide = power_of_two_side(1024)


class ConvNetConfig(BaseModel):
    """Shape of a DCGAN-style generator/discriminator pair (also the VAE's decoder/encoder)."""

    model_config = ConfigDict(extra="forbid")

    image_size: ImageSide = Field(32, description="Side of the square images, a power of two >= 8.")
    channels: int = Field(1, ge=1, le=4, description="Image channels: 1 grey, 3 RGB.")
    latent_dim: int = Field(64, ge=1, le=4096, description="Size of z.")
    width: int = Field(32, ge=4, le=1024, description="Channels at full resolution; doubled per halving.")
    d_width: int | None = Field(None, ge=4, le=1024, description="The discriminator's (VAE: encoder's) width "
                                "when it differs from the generator's (DCGAN's ndf beside ngf); default: width.")
    max_width: int = Field(512, ge=4, description="Cap on channels at low resolution.")
    depth: int = Field(1, ge=1, le=8, description="Convolutions per resolution level (1 = plain DCGAN).")
    g_activation: Activation = "relu"
    d_activation: Activation = "leaky_relu"
    g_norm: Norm = "batch"
    d_norm: Norm = "none"
    num_classes: int = Field(0, ge=0, description="> 0 makes the model class-conditional.")

    def level_widths(self, width: int | None = None) -> list[int]:
        """Channels from the 4x4 level up to full resolution (`width` there; default: the generator's)."""
        levels = int(math.log2(self.image_size)) - 2
        return [min((width or self.width) * 2 ** (levels - i), self.max_width) for i in range(levels + 1)]


class DCGANConfig(ConvNetConfig):
    name: Literal["dcgan"] = "dcgan"


def conv_unit(cin: int, cout: int, *, kernel: int, stride: int, padding: int, norm: str, act: str,
              transposed: bool = False) -> nn.Sequential:
    conv_cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    # a bias before batch/instance norm is cancelled by the mean subtraction
    conv = conv_cls(cin, cout, kernel, stride, padding, bias=norm in ("none", "spectral"))
    return nn.Sequential(apply_spectral(conv, norm), norm2d(norm, cout), activation(act))


@register_model("dcgan", DCGANConfig, tiny={"width": 8})
class Generator(nn.Module):
    """z (B, latent_dim) [+ labels (B,)] -> images (B, C, S, S) in [-1, 1]."""

    def __init__(self, cfg: ConvNetConfig):
        super().__init__()
        self.latent_dim, self.num_classes = cfg.latent_dim, cfg.num_classes
        self.image_size, self.channels = cfg.image_size, cfg.channels
        widths = cfg.level_widths()
        self.embed = nn.Embedding(cfg.num_classes, cfg.latent_dim) if cfg.num_classes else None
        in_dim = cfg.latent_dim * (2 if self.embed is not None else 1)
        layers = [conv_unit(in_dim, widths[0], kernel=4, stride=1, padding=0, norm=cfg.g_norm,
                            act=cfg.g_activation, transposed=True)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers.append(conv_unit(cin, cout, kernel=4, stride=2, padding=1, norm=cfg.g_norm,
                                    act=cfg.g_activation, transposed=True))
            layers += [conv_unit(cout, cout, kernel=3, stride=1, padding=1, norm=cfg.g_norm,
                                 act=cfg.g_activation) for _ in range(cfg.depth - 1)]
        self.body = nn.Sequential(*layers)
        self.to_image = nn.Sequential(nn.Conv2d(widths[-1], cfg.channels, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.to_image(self.body(z[:, :, None, None]))


class ProjectionCritic(nn.Module):
    """What the critics share (Discriminator here, models/videogan.VideoDiscriminator): one score per
    input, a linear head on features(x) plus, when class-conditional, the projection term <embed(y), h>."""

    def add_head(self, num_features: int, num_classes: int, norm: str) -> None:
        self.num_features = num_features
        self.head = apply_spectral(nn.Linear(num_features, 1), norm)
        self.embed = apply_spectral(nn.Embedding(num_classes, num_features), norm) if num_classes else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out = self.head(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            out = out + (self.embed(labels) * h).sum(1)
        return out


class Discriminator(ProjectionCritic):
    """images -> one logit (or critic score) per image; `features` is reused by the VAE encoder."""

    def __init__(self, cfg: ConvNetConfig):
        super().__init__()
        widths = cfg.level_widths(cfg.d_width)[::-1]
        norm, act = cfg.d_norm, cfg.d_activation
        layers = [apply_spectral(nn.Conv2d(cfg.channels, widths[0], 3, 1, 1), norm), activation(act)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [conv_unit(cin, cin, kernel=3, stride=1, padding=1, norm=norm, act=act)
                       for _ in range(cfg.depth - 1)]
            layers.append(conv_unit(cin, cout, kernel=4, stride=2, padding=1, norm=norm, act=act))
        self.body = nn.Sequential(*layers)
        self.add_head(widths[-1] * 16, cfg.num_classes, norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)
