"""Colour conversions shared by data loading, metrics and inference (ITU-R BT.601).

Full range (JPEG's YCbCr): Y = 0.299 R + 0.587 G + 0.114 B on the same scale as the RGB values,
Cb and Cr centred on half the range. The benchmark protocol's studio-range Y (16-235) lives in
genforge.metrics.psnr_ssim; it is an affine function of this Y, so a network trained on full-range
luma is judged on what it learnt."""

import torch

LUMA = (0.299, 0.587, 0.114)
_CB = (-0.168736, -0.331264, 0.5)
_CR = (0.5, -0.418688, -0.081312)


def _weights(rows, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def luma(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB -> (..., 1, H, W) luma, any scale, float."""
    x = x.float() if not x.is_floating_point() else x
    return torch.einsum("...chw,c->...hw", x, _weights(LUMA, x)).unsqueeze(-3)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(..., C, H, W) with C = 1 or 3 -> the same with `channels` channels: grey is repeated into RGB
    (a view), RGB becomes its luma (float); anything else is returned unchanged."""
    c = x.shape[-3]
    if channels == 3 and c == 1:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    if channels == 1 and c == 3:
        return luma(x)
    return x


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> full-range YCbCr in [0, 1] (chroma centred on 0.5)."""
    m = _weights((LUMA, _CB, _CR), x)
    y = torch.einsum("...chw,dc->...dhw", x, m)
    return y + _weights((0.0, 0.5, 0.5), x).view(3, 1, 1)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of rgb_to_ycbcr (not clamped)."""
    y, cb, cr = x.unbind(-3)
    cb, cr = cb - 0.5, cr - 0.5
    return torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=-3)
