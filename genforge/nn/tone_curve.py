"""A learned tone curve per channel: a piecewise-linear map of [-1, 1] onto itself (a 1D LUT).

Image-to-image generators made of convolutions and ReLUs learn smooth functions of a pixel's value
first (spectral bias): a staircase such as posterising (4 flat levels with sharp steps between them) or
a hard threshold is out of reach in any training of a practical length, even supervised. A curve with
`knots` free values per channel expresses it directly, and each knot's value gets its own gradient from
the pixels that fall near it. Applied to a generator's output (after the tanh), the convolutions do the
spatial part (smoothing, texture) and the curve the per-value part, as curve layers do in image
enhancement (CURL, Moran et al. 2020; image-adaptive 3D LUTs, Zeng et al. 2020, are the colour-mixing
generalisation). Initialised to the identity, so a generator starts as it would without it.
"""

import torch
from torch import nn

_GAIN = 10.0  # knot values are tanh(_GAIN * raw): Adam's steps on raw move them 10x as fast as a weight's


class ToneCurve(nn.Module):
    """(N, C, H, W) in [-1, 1] -> the same shape in [-1, 1]: channel c goes through its own curve.

    The curve of channel c passes through (knot_k, tanh(_GAIN * raw[c, k])) for `knots` evenly spaced knot_k
    from -1 to 1 and is linear between them; raw starts at atanh(knot_k) / _GAIN (the identity, clipped to
    stay finite at the ends). Memory is the input's size times a small constant: the two knots around
    each value are gathered, not a one-hot encoding over all of them.
    """

    def __init__(self, channels: int, knots: int):
        super().__init__()
        if knots < 2:
            raise ValueError(f"a tone curve needs at least 2 knots, got {knots}")
        self.channels, self.knots = channels, knots
        positions = torch.linspace(-1.0, 1.0, knots).clamp(-0.995, 0.995)
        self.raw = nn.Parameter((torch.atanh(positions) / _GAIN).repeat(channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if c != self.channels:
            raise ValueError(f"ToneCurve of {self.channels} channels got {c}")
        values = torch.tanh(_GAIN * self.raw).reshape(-1)  # channel-major: channel c's knots at c*knots ...
        position = (x.clamp(-1.0, 1.0) + 1.0) * (0.5 * (self.knots - 1))  # in [0, knots - 1]
        low = position.floor().clamp(max=self.knots - 2)
        frac = position - low
        offset = (torch.arange(c, device=x.device) * self.knots).view(1, c, 1, 1)
        index = (low.long() + offset).reshape(-1)
        left = values.index_select(0, index).view(n, c, h, w)
        right = values.index_select(0, index + 1).view(n, c, h, w)
        return left + frac * (right - left)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, knots={self.knots}"
