"""x2 upsampling layers: sub-pixel convolution (Shi et al. 2016, ESPCN) with ICNR initialisation,
resize-convolution and the transposed convolution, selectable by name (`upsample_layer`).

A convolution makes scale**2 sub-pixel planes per output channel and `PixelShuffle` interleaves
them. Randomly initialised, the scale**2 planes differ, so a fresh network paints a fixed
scale x scale checkerboard that training must first unlearn. ICNR (Aitken et al. 2017) gives the
scale**2 planes of each output channel the same kernel, which makes the layer start as "conv,
then nearest-neighbour upsampling": no checkerboard at step 0, full freedom afterwards.

A transposed convolution whose kernel is not a multiple of its stride (3 with stride 2) covers
alternate output pixels with 1 and 2 kernel taps, a fixed period-2 pattern that two stacked layers
turn into a period-4 one (Odena et al. 2016, "Deconvolution and checkerboard artifacts"); even
with kernel 4 each output phase has its own weights, so an undertrained network shows a grid.
Resize-convolution (nearest or bilinear x2, then a 3x3 conv) computes every output pixel with the
same weights and cannot make one."""

from typing import Literal

import torch
from torch import nn

from genforge.nn.activations import activation as make_activation


@torch.no_grad()
def icnr_(conv: nn.Conv2d, scale: int, std: float | None = None) -> nn.Conv2d:
    """Re-initialise `conv` (which feeds PixelShuffle(scale)) in place: Kaiming (or, with `std`,
    N(0, std)) for one sub-pixel plane per output channel, copied to all scale**2 planes, zero bias."""
    out_channels = conv.out_channels // scale ** 2
    kernel = torch.empty(out_channels, *conv.weight.shape[1:])
    if std is None:
        nn.init.kaiming_uniform_(kernel, a=5 ** 0.5)  # the PyTorch default scale, one plane only
    else:
        nn.init.normal_(kernel, 0.0, std)
    # PixelShuffle reads output channel c from input channels c*s^2 ... c*s^2 + s^2 - 1
    conv.weight.copy_(kernel.repeat_interleave(scale ** 2, dim=0))
    if conv.bias is not None:
        conv.bias.zero_()
    return conv


class PixelShuffleUpsample(nn.Sequential):
    """(B, channels, H, W) -> (B, out_channels, scale*H, scale*W) for scale 2, 3 or 4.

    x4 is two x2 stages (as in EDSR): one conv to 16x the channels would cost twice the
    parameters of two x2 stages and see less context per output pixel. `kernel_size=1` turns a
    stage into the equivalent of a 2x2 stride-2 transposed convolution (U-Net's "up-conv"), a
    cheap choice inside a network; 3 (the default) is the usual final upsampler."""

    def __init__(self, channels: int, scale: int, activation: str | None = None, *,
                 out_channels: int | None = None, kernel_size: int = 3):
        if scale not in (2, 3, 4):
            raise ValueError(f"PixelShuffleUpsample supports scale 2, 3 or 4, got {scale}")
        out_channels = channels if out_channels is None else out_channels
        stages = [2, 2] if scale == 4 else [scale]
        layers: list[nn.Module] = []
        cin = channels
        for i, s in enumerate(stages):
            cout = out_channels if i == len(stages) - 1 else channels
            conv = nn.Conv2d(cin, cout * s * s, kernel_size, padding=kernel_size // 2)
            layers += [icnr_(conv, s), nn.PixelShuffle(s)]
            if activation is not None:
                layers.append(make_activation(activation))
            cin = cout
        super().__init__(*layers)
        self.scale = scale


UpsampleName = Literal["transposed", "resize_conv", "resize_conv_bilinear", "pixel_shuffle"]
UPSAMPLE_HELP = ("x2 upsampling of the decoder: transposed (ConvTranspose2d, the paper's; uneven overlap "
                 "can paint a checkerboard), resize_conv (nearest x2 then a 3x3 conv), resize_conv_bilinear "
                 "(bilinear x2 then a 3x3 conv) or pixel_shuffle (3x3 conv to 4x the channels, PixelShuffle, "
                 "ICNR-initialised).")


class ResizeConv(nn.Sequential):
    """Nearest or bilinear x2, then a 3x3 convolution: (B, cin, H, W) -> (B, cout, 2H, 2W)."""

    def __init__(self, cin: int, cout: int, *, mode: str = "nearest", bias: bool = True,
                 padding_mode: str = "zeros"):
        align = {} if mode == "nearest" else {"align_corners": False}
        super().__init__(nn.Upsample(scale_factor=2, mode=mode, **align),
                         nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding_mode, bias=bias))


def upsample_layer(kind: str, cin: int, cout: int, *, bias: bool = True, padding_mode: str = "zeros",
                   transposed_kernel: int = 4) -> nn.Module:
    """One x2 upsampling layer cin -> cout channels of the given kind (UpsampleName).

    `transposed_kernel` is the ConvTranspose2d's kernel, 4 (padding 1: the U-Net's) or 3 (padding 1,
    output_padding 1: CycleGAN's ResNet); `padding_mode` applies to the 3x3 conv of resize_conv."""
    if kind == "transposed":
        if transposed_kernel == 3:
            return nn.ConvTranspose2d(cin, cout, 3, 2, padding=1, output_padding=1, bias=bias)
        return nn.ConvTranspose2d(cin, cout, 4, 2, padding=1, bias=bias)
    if kind in ("resize_conv", "resize_conv_bilinear"):
        mode = "nearest" if kind == "resize_conv" else "bilinear"
        return ResizeConv(cin, cout, mode=mode, bias=bias, padding_mode=padding_mode)
    if kind == "pixel_shuffle":
        return PixelShuffleUpsample(cin, 2, out_channels=cout)
    raise ValueError(f"unknown upsample kind {kind!r}")


def reinit_icnr_(module: nn.Module, std: float | None = None) -> nn.Module:
    """ICNR again for every PixelShuffleUpsample inside `module`, after a whole-network
    re-initialisation (init_normal_) drew its sub-pixel planes independently; returns module."""
    for up in module.modules():
        if isinstance(up, PixelShuffleUpsample):
            layers = list(up)
            for conv, shuffle in zip(layers, layers[1:]):
                if isinstance(conv, nn.Conv2d) and isinstance(shuffle, nn.PixelShuffle):
                    icnr_(conv, shuffle.upscale_factor, std)
    return module
