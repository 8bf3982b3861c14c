"""DIS optical flow, backward warping, the DIS interpolation baseline and the flicker figure (genforge.metrics.flow)."""

import cv2
import numpy as np
import pytest

from genforge.metrics.flow import backward_warp, dis_flow, dis_interpolate, flicker, flow_consistency
from genforge.metrics.psnr_ssim import psnr


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """A smooth random RGB texture, 120 x 160, full 8-bit range."""
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3)).astype(np.uint8), (0, 0), 1.5)
    return cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX)


def crop(texture, dy: int, dx: int) -> np.ndarray:
    return np.ascontiguousarray(texture[20 + dy:84 + dy, 20 + dx:116 + dx])


def test_dis_flow_recovers_a_translation(texture):
    a, b = crop(texture, 0, 0), crop(texture, 2, 3)  # b(p) = a(p + (3, 2)), so a(p) = b(p - (3, 2))
    flow = dis_flow(a, b)
    assert flow.shape == (64, 96, 2) and flow.dtype == np.float32
    inner = flow[10:-10, 10:-10]
    assert np.abs(inner - np.array([-3, -2], np.float32)).mean() < 0.5
    assert np.abs(backward_warp(b, flow)[10:-10, 10:-10].astype(int) - a[10:-10, 10:-10]).mean() < 3


def test_backward_warp_zero_flow_is_identity(texture):
    a = crop(texture, 0, 0)
    zero = np.zeros((*a.shape[:2], 2), np.float32)
    assert np.array_equal(backward_warp(a, zero), a)
    f = a.astype(np.float32) / 255
    assert np.array_equal(backward_warp(f, zero), f) and backward_warp(f[..., :1], zero).shape == (64, 96, 1)


def test_flow_consistency(texture):
    a, b = crop(texture, 0, 0), crop(texture, 2, 3)
    weight = flow_consistency(dis_flow(a, b), dis_flow(b, a))
    assert weight.shape == (64, 96) and 0 <= weight.min() and weight.max() <= 1
    assert weight[10:-10, 10:-10].mean() > 0.9
    bogus = np.full((64, 96, 2), 2.0, np.float32)  # both flows pointing the same way: inconsistent
    assert flow_consistency(bogus, bogus)[10:-10, 10:-10].max() < 0.5


def test_dis_interpolate_endpoints_and_beats_the_blend(texture):
    a, mid, b = crop(texture, 0, 0), crop(texture, 1, 2), crop(texture, 2, 4)
    assert np.array_equal(dis_interpolate(a, b, 0.0), a) and np.array_equal(dis_interpolate(a, b, 1.0), b)
    out = dis_interpolate(a, b, 0.5)
    assert out.shape == a.shape and out.dtype == np.uint8
    blend = np.rint((a.astype(np.float32) + b) / 2).astype(np.uint8)
    assert psnr(out, mid) > psnr(blend, mid) + 5


def test_flicker_static_noisy_and_scaled(texture):
    frames = [crop(texture, 0, k) for k in range(5)]  # a pan
    assert flicker(frames, frames) < 1.0  # a consistent video: warping explains the change
    still = [frames[0]] * 4
    assert flicker(still, still) == 0.0
    rng = np.random.default_rng(1)
    noisy = [np.clip(f + rng.normal(0, 8, f.shape), 0, 255).astype(np.uint8) for f in still]
    assert flicker(noisy, still) > 5
    big = [cv2.resize(f, (192, 128), interpolation=cv2.INTER_CUBIC) for f in frames]  # an "x2 output"
    assert flicker(iter(big), iter(frames)) < 2.0
    assert np.isnan(flicker(frames[:1], frames[:1]))
