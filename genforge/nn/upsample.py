"""Sub-pixel convolution upsampling (Shi et al. 2016, ESPCN) with ICNR initialisation.

A convolution makes scale**2 sub-pixel planes per output channel and `PixelShuffle` interleaves
them. Randomly initialised, the scale**2 planes differ, so a fresh network paints a fixed
scale x scale checkerboard that training must first unlearn. ICNR (Aitken et al. 2017) gives the
scale**2 planes of each output channel the same kernel, which makes the layer start as "conv,
then nearest-neighbour upsampling": no checkerboard at step 0, full freedom afterwards."""

import torch
from torch import nn

from genforge.nn.activations import activation as make_activation


@torch.no_grad()
def icnr_(conv: nn.Conv2d, scale: int) -> nn.Conv2d:
    """Re-initialise `conv` (which feeds PixelShuffle(scale)) in place: Kaiming for one sub-pixel
    plane per output channel, copied to all scale**2 planes, zero bias."""
    out_channels = conv.out_channels // scale ** 2
    kernel = torch.empty(out_channels, *conv.weight.shape[1:])
    nn.init.kaiming_uniform_(kernel, a=5 ** 0.5)  # the PyTorch default scale, one plane only
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
