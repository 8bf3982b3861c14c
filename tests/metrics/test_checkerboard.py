"""The checkerboard figure on synthetic cases with a known answer: a stride-2 kernel-3 transposed
convolution (uneven overlap) paints a grid, resize-convolution does not."""

import numpy as np
import pytest
import torch

from genforge.data.degrade import imresize
from genforge.data.pair_folders import read_translation
from genforge.metrics.checkerboard import checkerboard, grid_energy
from genforge.nn.upsample import upsample_layer


def photo_crop(size: int = 64) -> torch.Tensor:
    """A centre crop of a bundled holdout photo, 1 x 3 x size x size in [0, 1]: the ground truth."""
    photo = read_translation("edges2photos", "holdout").b[0]
    h, w = photo.shape[:2]
    crop = photo[(h - size) // 2:(h + size) // 2, (w - size) // 2:(w + size) // 2]
    return torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255


def constant_upsampler(kind: str, channels: int = 3) -> torch.nn.Module:
    """An x2 layer whose every tap weighs the same (per channel, no mixing): what is left of its
    output pattern is the layer's geometry, not learned weights."""
    layer = upsample_layer(kind, channels, channels, transposed_kernel=3, padding_mode="reflect")
    conv = layer if kind == "transposed" else layer[1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(channels):
            conv.weight[c, c] = 1 / conv.weight[c, c].numel()
    return layer


def test_pure_grids_and_flat_images():
    i, j = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    assert grid_energy((-1.0) ** (i + j))[2] > 0.99  # the 1-pixel checkerboard: all period 2
    period4 = np.cos(np.pi * i / 2) + np.cos(np.pi * j / 2)
    energy = grid_energy(period4)
    assert energy[4] > 0.99 and energy[2] < 1e-6
    assert grid_energy(np.full((16, 16, 3), 7.0)) == {2: 0.0, 4: 0.0}
    with pytest.raises(ValueError, match="at least 8x8"):
        grid_energy(np.zeros((6, 30)))
    smooth = np.sin(2 * np.pi * i / 32)[:, :, None].repeat(3, axis=2)
    assert grid_energy(smooth)[2] < 1e-6 and checkerboard(smooth, smooth) == pytest.approx(1.0)


def test_uneven_transposed_convolution_shows_resize_conv_does_not():
    truth = photo_crop(64)
    small = imresize(truth, scale=0.5).clamp(0, 1)  # 32 x 32: what the layer upsamples back
    with torch.no_grad():
        transposed = constant_upsampler("transposed")(small)
        resized = constant_upsampler("resize_conv")(small)
        bilinear = constant_upsampler("resize_conv_bilinear")(small)
    assert transposed.shape == resized.shape == truth.shape
    assert checkerboard(transposed, truth) > 100  # alternate pixels get 1 and 2 taps per direction
    assert checkerboard(resized, truth) < 2 and checkerboard(bilinear, truth) < 1
    assert checkerboard(truth, truth) == pytest.approx(1.0)


def test_two_stacked_transposed_convolutions_give_period_four():
    truth = photo_crop(64)
    small = imresize(truth, scale=0.25).clamp(0, 1)
    up = constant_upsampler("transposed")
    with torch.no_grad():
        out = up(up(small))
        plain = constant_upsampler("resize_conv")(constant_upsampler("resize_conv")(small))
    assert grid_energy(out)[4] > 50 * grid_energy(truth)[4]
    assert grid_energy(plain)[4] < 3 * grid_energy(truth)[4]


def test_layouts_agree():
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    hwc = x[0].permute(1, 2, 0).numpy()
    assert grid_energy(x) == pytest.approx(grid_energy(hwc))
    assert grid_energy(x[0]) == pytest.approx(grid_energy(hwc))
    with pytest.raises(ValueError, match="one image"):
        grid_energy(torch.rand(2, 3, 16, 16))
