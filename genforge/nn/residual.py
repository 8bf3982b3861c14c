"""EDSR-style residual block (Lim et al. 2017): conv-act-conv plus identity, without batch norm.

Batch norm is left out on purpose: it normalises away the absolute intensity range that a
super-resolution network must reproduce, and EDSR showed removing it improves PSNR and halves
memory. `res_scale` < 1 (EDSR uses 0.1 for its widest models) damps every branch so deep stacks
stay stable early in training."""

import torch
from torch import nn

from genforge.nn.activations import activation as make_activation


class ResidualBlock(nn.Module):
    """x -> x + res_scale * conv3x3(act(conv3x3(x))); keeps channels and resolution."""

    def __init__(self, channels: int, activation: str = "relu", res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            make_activation(activation),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.res_scale == 1.0:  # saves a full-size multiply per block on CPU
            return x + self.body(x)
        return x + self.body(x) * self.res_scale
