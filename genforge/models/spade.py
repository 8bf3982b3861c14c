"""SPADE / GauGAN (Park et al. 2019): semantic image synthesis from a label map.

The generator starts from the label map itself, downsampled by 2**num_up, and upsamples it
num_up times through residual blocks whose normalisation layers are SPADE: each one normalises
its features without parameters and re-modulates them with a scale and shift predicted from the
label map at that resolution (genforge.nn.norms.SPADE). The layout therefore enters at every
scale instead of only at the input, where normalisation would wash it out.

    label_map -> nearest 1/2**num_up [, style(z)] -> conv3x3 -> block -> (up x2 -> block) * num_up
              -> leaky ReLU -> conv3x3 -> tanh        (every block also reads label_map)

`up x2` is SPADE's nearest-neighbour resize by default (`upsample`); bilinear avoids its 2x2
blocks, and the learned kinds (resize_conv, resize_conv_bilinear, pixel_shuffle, transposed) add a
channel-keeping layer in front of the block.

Multi-modal output (use_style): a VAE encoder maps a style image to (mu, logvar); a sample z is
projected to a coarse 4x4 map of z_dim channels, resized (bilinear) to the bottom grid and read
by the first conv next to the label map, so it adds a spatially varying term to the features.
Spatially varying on purpose: a per-channel constant (z broadcast as a bias) is exactly what
instance normalisation removes, so it would vanish in the first block and every z would give the
same image. SPADE instead reshapes fc(z) to the bottom grid, which ties the network to one output
size; the resized 4x4 map works at any size. Without z the prior's mean (zeros) is used, so the
output is deterministic.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from genforge.nn import UPSAMPLE_HELP, apply_spectral, reinit_icnr_, upsample_layer
from genforge.nn.init import init_normal_
from genforge.nn.norms import SPADE
from genforge.registry import register_model

DONT_CARE = 255  # the label id of unlabelled pixels (Cityscapes, ADE20K convention)
STYLE_GRID = 4  # side of the coarse map z is projected to


def one_hot_labels(ids: torch.Tensor, label_nc: int, *, check: bool = True) -> torch.Tensor:
    """ids (N, H, W) int64 -> one-hot (N, label_nc, H, W) float32; DONT_CARE pixels get all zeros,
    so they modulate nothing rather than pretend to be a class. check=False skips the range check
    (a host sync) where the ids were checked when the data was read (training batches)."""
    care = ids != DONT_CARE
    safe = torch.where(care, ids, torch.zeros_like(ids))
    if check and ((safe < 0).any() or (safe >= label_nc).any()):
        raise ValueError(f"label ids must be in 0..{label_nc - 1} or {DONT_CARE} (don't care), got "
                         f"{int(ids[care].min())}..{int(ids[care].max())}")
    one_hot = F.one_hot(safe, label_nc).permute(0, 3, 1, 2).to(torch.float32)
    return one_hot * care[:, None].to(torch.float32)


class SPADEConfig(BaseModel):
    """Shape of a SPADE generator (and its style encoder). The defaults follow SPADE's 256px model."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["spade"] = "spade"
    label_nc: int = Field(8, ge=2, le=256, description="Label classes, the channels of the one-hot map.")
    out_channels: int = Field(3, ge=1, le=4, description="Output image channels.")
    width: int = Field(64, ge=4, le=256, description="Channels at full resolution (ngf).")
    num_up: int = Field(5, ge=1, le=7, description=(
        "Upsampling stages; the generator starts at 1/2**num_up of the output, so sizes must be multiples of it."))
    max_width: int = Field(1024, ge=4, le=4096, description=(
        "Cap on channels; the bottom has min(16 * width, max_width)."))
    spade_hidden: int = Field(128, ge=4, le=1024, description="Hidden channels of each SPADE layer's label-map conv.")
    param_free: Literal["instance", "batch"] = Field("instance", description="The parameter-free norm inside SPADE.")
    spectral: bool = Field(True, description="Spectral norm on the residual blocks' convs, as SPADE.")
    use_style: bool = Field(False, description="Add a VAE style encoder and z input for multi-modal output.")
    z_dim: int = Field(64, ge=1, le=1024, description="Size of the style code z.")
    encoder_width: int = Field(32, ge=4, le=256, description="Channels of the style encoder's first conv.")
    # the default stays SPADE's: model folders saved before this key existed were trained with it
    upsample: Literal["nearest", "bilinear", "transposed", "resize_conv", "resize_conv_bilinear", "pixel_shuffle"] = \
        Field("nearest", description=(
            "x2 upsampling between the residual blocks: nearest (SPADE's) or bilinear resize alone, or a learned "
            "channel-keeping layer: " + UPSAMPLE_HELP.split(": ", 1)[1]))

    def level_widths(self) -> list[int]:
        """Channels at the bottom, then after each upsampling stage (halving, not below width)."""
        widths = [min(16 * self.width, self.max_width)]
        for _ in range(self.num_up):
            widths.append(max(widths[-1] // 2, self.width))
        return widths


class SPADEResBlock(nn.Module):
    """x -> shortcut(x) + conv(act(SPADE(conv(act(SPADE(x)))))); the shortcut is learned (SPADE +
    1x1 conv) when the channels change."""

    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int = 128, param_free: str = "instance",
                 spectral: bool = True):
        super().__init__()
        fmid = min(fin, fout)
        sn = "spectral" if spectral else "none"
        self.norm_0 = SPADE(fin, label_nc, hidden, param_free)
        self.conv_0 = apply_spectral(nn.Conv2d(fin, fmid, 3, padding=1), sn)
        self.norm_1 = SPADE(fmid, label_nc, hidden, param_free)
        self.conv_1 = apply_spectral(nn.Conv2d(fmid, fout, 3, padding=1), sn)
        if fin != fout:
            self.norm_s = SPADE(fin, label_nc, hidden, param_free)
            self.conv_s = apply_spectral(nn.Conv2d(fin, fout, 1, bias=False), sn)
        else:
            self.norm_s = self.conv_s = None

    def forward(self, x: torch.Tensor, label_map: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.conv_s is None else self.conv_s(self.norm_s(x, label_map))
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, label_map), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, label_map), 0.2))
        return shortcut + dx


class StyleEncoder(nn.Module):
    """image (N, in_channels, H, W) in [-1, 1], H, W >= 32 -> (mu, logvar), each (N, z_dim).

    Five stride-2 3x3 convs, then an adaptive pool to 4x4 so that any image size gives the same
    code length (SPADE resizes the image to 256 instead). The fifth conv has no instance norm: on a
    32-pixel image its output is 1x1, where instance statistics are undefined."""

    MIN_SIZE = 32

    def __init__(self, in_channels: int = 3, width: int = 32, z_dim: int = 64):
        super().__init__()
        widths = [width * min(2 ** i, 8) for i in range(5)]
        layers = []
        for i, (cin, cout) in enumerate(zip([in_channels] + widths[:-1], widths)):
            normed = i < len(widths) - 1
            layers.append(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=not normed))
            if normed:
                layers.append(nn.InstanceNorm2d(cout, affine=True))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.body = nn.Sequential(*layers)
        self.fc_mu = nn.Linear(widths[-1] * 16, z_dim)
        self.fc_logvar = nn.Linear(widths[-1] * 16, z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if min(image.shape[-2:]) < self.MIN_SIZE:
            raise ValueError(f"StyleEncoder needs images of at least {self.MIN_SIZE}x{self.MIN_SIZE}, "
                             f"got {tuple(image.shape[-2:])}")
        h = F.adaptive_avg_pool2d(self.body(image), 4).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)


def _upsampler(kind: str, channels: int) -> nn.Module:
    """x2, channels kept: a parameter-free resize (nearest, bilinear) or a learned upsample_layer."""
    if kind in ("nearest", "bilinear"):
        return nn.Upsample(scale_factor=2, mode=kind, **({} if kind == "nearest" else {"align_corners": False}))
    return upsample_layer(kind, channels, channels)


class SPADEGenerator(nn.Module):
    """label_map (N, label_nc, H, W) one-hot float [+ z (N, z_dim)] -> (N, out_channels, H, W) in [-1, 1].

    H and W must be multiples of `size_multiple` = 2**num_up, and with instance norm not both equal
    to it (a 1x1 bottom grid has no instance statistics)."""

    def __init__(self, cfg: SPADEConfig):
        super().__init__()
        self.size_multiple = 2 ** cfg.num_up
        self.z_dim, self.use_style = cfg.z_dim, cfg.use_style
        self.instance_norm = cfg.param_free == "instance"
        widths = cfg.level_widths()
        bottom = widths[0]

        def block(fin: int, fout: int) -> SPADEResBlock:
            return SPADEResBlock(fin, fout, cfg.label_nc, cfg.spade_hidden, cfg.param_free, cfg.spectral)

        # with a style, the stem also reads z as a z_dim-channel map (see the module docstring)
        self.style = nn.Linear(cfg.z_dim, cfg.z_dim * STYLE_GRID ** 2) if cfg.use_style else None
        style_channels = cfg.z_dim if cfg.use_style else 0
        self.stem = nn.Conv2d(cfg.label_nc + style_channels, bottom, 3, padding=1)
        self.head = block(bottom, bottom)
        self.upsamplers = nn.ModuleList(_upsampler(cfg.upsample, fin) for fin in widths[:-1])
        self.ups = nn.ModuleList(block(fin, fout) for fin, fout in zip(widths[:-1], widths[1:]))
        self.to_image = nn.Conv2d(widths[-1], cfg.out_channels, 3, padding=1)
        reinit_icnr_(init_normal_(self), std=0.02)  # pixel_shuffle starts checkerboard-free

    def forward(self, label_map: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        m = self.size_multiple
        h, w = label_map.shape[-2:]
        if h % m or w % m:  # a shape check, not a value one: fine for export
            raise ValueError(f"SPADEGenerator label map height and width must be multiples of {m} (2**num_up), "
                             f"got {(int(h), int(w))}: pad the label map")
        if self.instance_norm and h * w == m * m:  # a shape check, not a value one: fine for export
            raise ValueError(f"SPADEGenerator needs a label map larger than {m}x{m}: the bottom grid would be 1x1, "
                             "where instance normalisation is undefined (use 2 * size_multiple on one side)")
        x = F.interpolate(label_map, size=(h // m, w // m), mode="nearest")
        if self.style is None:
            if z is not None:
                raise ValueError("this SPADE generator takes no z: build it with use_style=True")
        else:
            if z is None:  # the prior's mean
                z = label_map.new_zeros(label_map.shape[0], self.z_dim)
            style = self.style(z).view(-1, self.z_dim, STYLE_GRID, STYLE_GRID)
            style = F.interpolate(style, size=x.shape[-2:], mode="bilinear", align_corners=False)
            # concatenated for the stem rather than added after it: stem(cat) = stem_label + stem_style
            # all the same, but a traced ONNX graph loses the channel count of a resized map, and
            # instance norm can only be exported when the conv in front of it fixes that count
            x = torch.cat([x, style], dim=1)
        x = self.head(self.stem(x), label_map)
        for upsample, up in zip(self.upsamplers, self.ups):
            x = up(upsample(x), label_map)
        return torch.tanh(self.to_image(F.leaky_relu(x, 0.2)))


@register_model("spade", SPADEConfig, tiny={"width": 4, "num_up": 2, "spade_hidden": 8, "use_style": True, "z_dim": 4,
                                          "encoder_width": 4})
class SPADEModel(nn.Module):
    """The SPADE generator with its optional style encoder: what a translation task trains and what
    deployment receives (forward is the generator)."""

    def __init__(self, cfg: SPADEConfig):
        super().__init__()
        self.label_nc, self.out_channels = cfg.label_nc, cfg.out_channels
        self.size_multiple = 2 ** cfg.num_up
        self.z_dim, self.use_style = cfg.z_dim, cfg.use_style
        self.generator = SPADEGenerator(cfg)
        self.encoder = (init_normal_(StyleEncoder(cfg.out_channels, cfg.encoder_width, cfg.z_dim))
                        if cfg.use_style else None)

    def forward(self, label_map: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(label_map, z)

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Style image -> (mu, logvar) of q(z | image)."""
        if self.encoder is None:
            raise ValueError("this SPADE model has no style encoder: build it with use_style=True")
        return self.encoder(image)
