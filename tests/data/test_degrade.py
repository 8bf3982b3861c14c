"""MATLAB-compatible bicubic resize and the real-world degradations (blur, noise, JPEG).

Agreement with the benchmark LR files (made by MATLAB) is tested in
tests/metrics/test_sr_protocol.py; here the resize is checked against a direct, loop-by-loop
transcription of MATLAB's definition, and the degradations for shapes, ranges and determinism.
"""

import math

import numpy as np
import pytest
import torch

from genforge.data.degrade import (
    Degradation,
    add_noise,
    bicubic_downscale,
    gaussian_blur,
    imresize,
    imresize_np,
    jpeg,
)


def reference_resize_1d(signal: np.ndarray, out_length: int, scale: float, antialias: bool = True):
    """MATLAB's imresize along one axis, written as plainly as possible (slow, float64)."""

    def cubic(x):
        x = abs(x)
        if x <= 1:
            return 1.5 * x**3 - 2.5 * x**2 + 1
        if x <= 2:
            return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
        return 0.0

    n = len(signal)
    width = 4.0 / scale if (scale < 1 and antialias) else 4.0
    out = np.zeros(out_length)
    for i in range(1, out_length + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        total, acc = 0.0, 0.0
        for j in range(left, left + math.ceil(width) + 2):
            if scale < 1 and antialias:
                w = scale * cubic(scale * (u - j))
            else:
                w = cubic(u - j)
            k = j
            while k < 1 or k > n:  # mirror: ... 2 1 | 1 2 ... n | n n-1 ...
                k = 1 - k if k < 1 else 2 * n + 1 - k
            total += w
            acc += w * signal[k - 1]
        out[i - 1] = acc / total
    return out


def reference_resize(image: np.ndarray, out_h: int, out_w: int, scale_h: float, scale_w: float, antialias=True):
    first_h = scale_h <= scale_w
    if first_h:
        image = np.stack([reference_resize_1d(image[:, c], out_h, scale_h, antialias)
                          for c in range(image.shape[1])], 1)
        return np.stack([reference_resize_1d(image[r], out_w, scale_w, antialias) for r in range(out_h)], 0)
    image = np.stack([reference_resize_1d(image[r], out_w, scale_w, antialias) for r in range(image.shape[0])], 0)
    return np.stack([reference_resize_1d(image[:, c], out_h, scale_h, antialias) for c in range(out_w)], 1)


@pytest.mark.parametrize(
    "shape, scale, size, antialias",
    [
        ((13, 17), 0.5, None, True),
        ((13, 17), 1 / 3, None, True),
        ((12, 9), 0.25, None, False),
        ((7, 5), 2, None, True),
        ((6, 8), 3, None, False),
        ((10, 11), 1.7, None, True),
        ((16, 14), None, (5, 9), True),  # size given: per-axis scales, width shrinks less
        ((4, 3), None, (11, 2), True),  # one axis up, one down; tiny input exercises mirroring
    ],
)
def test_imresize_matches_matlab_definition(shape, scale, size, antialias):
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 2, shape)
    out = imresize(torch.from_numpy(image)[None], scale, size, antialias)[0].numpy()
    if size is None:
        out_h, out_w = math.ceil(shape[0] * scale), math.ceil(shape[1] * scale)
        scale_h = scale_w = scale
    else:
        (out_h, out_w), scale_h, scale_w = size, size[0] / shape[0], size[1] / shape[1]
    expected = reference_resize(image, out_h, out_w, scale_h, scale_w, antialias)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_imresize_shapes():
    x = torch.rand(2, 3, 17, 23)
    assert imresize(x, 0.5).shape == (2, 3, 9, 12)  # ceil, as MATLAB
    assert imresize(x, 2).shape == (2, 3, 34, 46)
    assert imresize(x, size=(8, 11)).shape == (2, 3, 8, 11)
    assert imresize(x, (0.5, 1.0)).shape == (2, 3, 9, 23)
    assert imresize(x[0], 1 / 3).shape == (3, 6, 8)
    assert imresize(torch.rand(1, 1, 255, 255), 1 / 3).shape[-2:] == (85, 85)  # no float fuzz
    assert imresize(x, 1).equal(x)
    assert imresize(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 2).dtype == torch.float32


def test_imresize_rejects_bad_arguments():
    x = torch.rand(1, 1, 8, 8)
    for kwargs in ({}, {"scale": 0}, {"scale": -2}, {"size": (0, 4)}, {"size": (4,)}, {"scale": float("nan")}):
        with pytest.raises(ValueError):
            imresize(x, **kwargs)
    with pytest.raises(ValueError, match="C x H x W"):
        imresize(torch.rand(8, 8), 2)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2, 3, 1.5])
def test_constant_image_stays_constant(scale):
    x = torch.full((1, 2, 19, 21), 0.7, dtype=torch.float64)
    for antialias in (True, False):
        out = imresize(x, scale, antialias=antialias)
        assert torch.allclose(out, torch.full_like(out, 0.7), atol=1e-12)
    assert torch.allclose(imresize(x * 0 - 3, scale), torch.tensor(-3.0, dtype=torch.float64))


def test_imresize_np_dtypes_and_layouts():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = imresize_np(image, 0.5)
    assert out.dtype == np.uint8 and out.shape == (10, 15, 3)
    grey = imresize_np(image[:, :, 0], 2)
    assert grey.shape == (40, 60) and grey.dtype == np.uint8
    wide = imresize_np(image.astype(np.uint16) * 257, 0.5)
    assert wide.dtype == np.uint16 and np.abs(wide.astype(int) - out.astype(int) * 257).max() <= 257
    floats = imresize_np(image.astype(np.float32) / 255, 0.5)
    assert floats.dtype == np.float64 and np.abs(floats * 255 - out).max() <= 1.0
    # bicubic overshoot on a hard edge is saturated for integer images, kept for float ones
    edge = np.zeros((8, 8), np.uint8)
    edge[:, 4:] = 255
    assert imresize_np(edge, 3).max() == 255 and imresize_np(edge.astype(float), 3).max() > 255


def test_bicubic_downscale_sizes_and_types():
    rng = np.random.default_rng(2)
    hr = rng.integers(0, 256, (35, 22, 3), dtype=np.uint8)
    lr = bicubic_downscale(hr, 4)
    assert lr.shape == (8, 5, 3) and lr.dtype == np.uint8  # floor(HR / scale)
    np.testing.assert_array_equal(lr, bicubic_downscale(hr[:32, :20], 4))  # crop first
    x = torch.from_numpy(hr).permute(2, 0, 1).float() / 255
    out = bicubic_downscale(x[None], 4)
    assert out.shape == (1, 3, 8, 5) and out.dtype == torch.float32
    assert np.abs(out[0].permute(1, 2, 0).numpy() * 255 - lr).max() <= 1.0
    with pytest.raises(ValueError):
        bicubic_downscale(hr, 1.5)


# ------------------------------------------------------------------------ degradations


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 40, generator=generator)
    return gaussian_blur(x, 1.0)  # some structure, not white noise


def test_gaussian_blur(batch):
    assert gaussian_blur(batch, 0).equal(batch)
    out = gaussian_blur(batch, 1.5)
    assert out.shape == batch.shape
    assert out.min() >= batch.min() and out.max() <= batch.max()  # a positive kernel averages
    assert out.std() < batch.std()
    constant = torch.full((1, 1, 6, 6), 0.25)
    assert torch.allclose(gaussian_blur(constant, 4.0), constant)  # radius > size: replicate pad
    per_image = gaussian_blur(batch, [0.0, 1.5, 3.0])
    assert per_image[0].equal(batch[0]) and torch.allclose(per_image[1], out[1])
    assert per_image[2].std() < per_image[1].std()
    with pytest.raises(ValueError):
        gaussian_blur(batch, [1.0, 2.0])
    with pytest.raises(ValueError):
        gaussian_blur(batch, -1)


def test_add_noise(batch):
    grey = torch.full((2, 3, 64, 64), 0.5)
    noisy = add_noise(grey, 0.05, torch.Generator().manual_seed(1))
    assert noisy.shape == grey.shape
    assert abs((noisy - grey).std().item() - 0.05) < 0.005
    assert add_noise(grey, [0.0, 0.05], torch.Generator().manual_seed(1))[0].equal(grey[0])
    out = add_noise(batch, 0.3, torch.Generator().manual_seed(2))
    assert out.min() >= 0 and out.max() <= 1
    same = add_noise(batch, 0.3, torch.Generator().manual_seed(2))
    other = add_noise(batch, 0.3, torch.Generator().manual_seed(3))
    assert out.equal(same) and not out.equal(other)


def test_jpeg(batch):
    low, high = jpeg(batch, 10), jpeg(batch, 95)
    assert low.shape == batch.shape and low.dtype == batch.dtype
    assert low.min() >= 0 and low.max() <= 1
    assert torch.equal(low * 255, (low * 255).round())  # decoded 8-bit pixels
    error_low, error_high = (low - batch).abs().mean(), (high - batch).abs().mean()
    assert error_low > 0.02 and error_high < error_low
    assert jpeg(batch, 10).equal(low)  # deterministic
    mixed = jpeg(batch, [10, 95, 10])
    assert mixed[0].equal(low[0]) and mixed[1].equal(high[1])
    grey = jpeg(batch[:, :1], 30)
    assert grey.shape == (3, 1, 32, 40) and not grey.equal(batch[:, :1])
    with pytest.raises(ValueError):
        jpeg(batch, 0)
    with pytest.raises(ValueError):
        jpeg(torch.rand(1, 4, 8, 8), 50)


def test_degradation_pipeline(batch):
    degrade = Degradation(4, blur_sigma=(0.5, 2), noise_sigma=(0.01, 0.05), jpeg_quality=(30, 80),
                          blur_prob=1, noise_prob=1, jpeg_prob=1)
    lr = degrade(batch, torch.Generator().manual_seed(0))
    assert lr.shape == (3, 3, 8, 10) and lr.dtype == batch.dtype
    assert lr.min() >= 0 and lr.max() <= 1
    again = degrade(batch, torch.Generator().manual_seed(0))
    other = degrade(batch, torch.Generator().manual_seed(1))
    assert lr.equal(again) and not lr.equal(other)
    torch.manual_seed(5)
    first = degrade(batch)
    torch.manual_seed(5)
    assert degrade(batch).equal(first)  # the global RNG works too
    clean = Degradation(4, blur_prob=0, noise_prob=0, jpeg_prob=0)(batch, torch.Generator().manual_seed(0))
    assert clean.equal(bicubic_downscale(batch, 4).clamp(0, 1))
    assert not lr.equal(clean)
    assert "scale=4" in repr(degrade)


def test_degradation_rejects_bad_config():
    with pytest.raises(ValueError, match="scale"):
        Degradation(0)
    with pytest.raises(ValueError, match="blur_sigma"):
        Degradation(2, blur_sigma=(2, 1))
    with pytest.raises(ValueError, match="jpeg_quality"):
        Degradation(2, jpeg_quality=(0, 50))
    with pytest.raises(ValueError, match="noise_prob"):
        Degradation(2, noise_prob=1.5)
    with pytest.raises(ValueError, match="B x C x H x W"):
        Degradation(2)(torch.rand(3, 8, 8))
