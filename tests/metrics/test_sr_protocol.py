"""The super-resolution benchmark protocol (../shared/benchmarks/README.md) against known numbers.

Tests marked by the ``benchmarks`` fixture need Set5/Set14 from ../shared/benchmarks (next to
the repository) and skip when it is absent.
"""

from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from genforge.data.degrade import bicubic_downscale
from genforge.data.io import write_image
from genforge.errors import UserError
from genforge.metrics.psnr_ssim import (
    crop_to_scale,
    evaluate_benchmark,
    evaluate_pair,
    load_benchmark,
    psnr,
    rgb_to_y,
    shave,
    ssim,
    upscale_bicubic,
)

BENCHMARKS = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"

# Bicubic rows of the published tables (Y channel, shave = scale): PSNR from the benchmark
# README; SSIM as reported with it (VDSR / LapSRN papers).
PUBLISHED = {
    ("Set5", 2): (33.66, 0.9299),
    ("Set5", 3): (30.39, 0.8682),
    ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688),
    ("Set14", 3): (27.55, 0.7742),
    ("Set14", 4): (26.00, 0.7027),
}


@pytest.fixture(scope="module")
def benchmarks() -> Path:
    if not (BENCHMARKS / "Set5").is_dir() or not (BENCHMARKS / "Set14").is_dir():
        pytest.skip(f"benchmark sets not found at {BENCHMARKS} (Set5/ and Set14/ expected)")
    return BENCHMARKS


# ------------------------------------------------------------------------ published numbers


@pytest.mark.parametrize("name, scale", list(PUBLISHED))
def test_bicubic_baseline_reproduces_published_numbers(benchmarks, name, scale):
    result = evaluate_benchmark(load_benchmark(benchmarks / name, scale), scale, upscale_bicubic)
    psnr_paper, ssim_paper = PUBLISHED[(name, scale)]
    print(f"{name} x{scale}: PSNR {result['psnr']:.4f} (paper {psnr_paper}), "
          f"SSIM {result['ssim']:.4f} (paper {ssim_paper})")
    assert abs(result["psnr"] - psnr_paper) < 0.05
    assert abs(result["ssim"] - ssim_paper) < 0.005


@pytest.mark.parametrize("name", ["Set5", "Set14"])
def test_downscale_reproduces_benchmark_lr_files(benchmarks, name):
    """The LR files were made by MATLAB imresize(hr, 1/s, 'bicubic') on uint8 images."""
    for scale in (2, 3, 4):
        diffs = []
        for item in load_benchmark(benchmarks / name, scale):
            lr = bicubic_downscale(item.hr, scale)
            assert lr.shape == item.lr.shape, item.name
            diffs.append(np.abs(lr.astype(int) - item.lr.astype(int)).ravel())
        diffs = np.concatenate(diffs)
        print(f"{name} x{scale}: max diff {diffs.max()}, exact {np.mean(diffs == 0):.6f}")
        assert diffs.max() <= 1
        assert np.mean(diffs == 0) > 0.999  # measured: bit-exact


# ------------------------------------------------------------------------ building blocks


def test_rgb_to_y():
    white = np.full((2, 2, 3), 255.0)
    black = np.zeros((2, 2, 3))
    assert np.allclose(rgb_to_y(white), 235) and np.allclose(rgb_to_y(black), 16)
    assert rgb_to_y(white).shape == (2, 2) and rgb_to_y(white).dtype == np.float64
    assert np.isclose(rgb_to_y(np.array([[[255.0, 0, 0]]]))[0, 0], 16 + 65.481)
    grey = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(rgb_to_y(grey), grey)  # a grey image is its own Y
    np.testing.assert_array_equal(rgb_to_y(grey[:, :, None]), grey)
    with pytest.raises(ValueError):
        rgb_to_y(np.zeros((2, 2, 4)))


def test_psnr_known_values():
    a = np.random.default_rng(0).integers(0, 250, (16, 16)).astype(np.float64)
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 1) == pytest.approx(48.1308036, abs=1e-6)  # 20 log10(255)
    assert psnr(a, a + 10) == pytest.approx(28.1308036, abs=1e-6)
    assert psnr(np.zeros(4), np.full(4, 255.0)) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        psnr(a, a[:8])


def test_ssim_known_values():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 255, (40, 48))
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    value = ssim(a, b)
    assert 0 < value < 1
    # skimage with the same settings crops the filter border away: same as 'valid'
    expected = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255)
    assert value == pytest.approx(expected, abs=1e-9)
    rgb_a, rgb_b = np.stack([a, a, b], 2), np.stack([b, a, a], 2)
    assert ssim(rgb_a, rgb_b) == pytest.approx((2 * value + 1) / 3)  # per-channel mean
    with pytest.raises(ValueError):
        ssim(a[:10, :10], b[:10, :10])  # smaller than the window


def test_crop_and_shave():
    image = np.zeros((13, 10, 3))
    assert crop_to_scale(image, 4).shape == (12, 8, 3)
    assert crop_to_scale(image, 1).shape == image.shape
    assert shave(image, 3).shape == (7, 4, 3)
    assert shave(image, 0).shape == image.shape
    with pytest.raises(ValueError):
        shave(image, 5)


def test_evaluate_pair():
    rng = np.random.default_rng(2)
    hr = rng.integers(0, 256, (50, 45, 3), dtype=np.uint8)  # not a multiple of 4
    cropped = crop_to_scale(hr, 4)
    same = evaluate_pair(cropped, hr, 4)
    assert same["psnr"] == float("inf") and same["ssim"] == pytest.approx(1.0)
    sr = np.clip(cropped.astype(int) + 1, 0, 255).astype(np.uint8)
    sr[cropped == 255] = 254  # keep the error exactly 1 everywhere
    rgb = evaluate_pair(sr, hr, 4, mode="rgb")
    assert rgb["psnr"] == pytest.approx(48.1308, abs=1e-3)
    y = evaluate_pair(sr, hr, 4, mode="y")
    assert y["psnr"] > 48.1308  # Y squeezes the range to 219/255
    wide = evaluate_pair(sr.astype(np.uint16) * 257, hr.astype(np.uint16) * 257, 4)
    assert wide["psnr"] == pytest.approx(y["psnr"]) and wide["ssim"] == pytest.approx(y["ssim"])
    with pytest.raises(ValueError, match=r"48x44.*scale x the LR size"):
        evaluate_pair(hr, hr, 4)
    with pytest.raises(ValueError, match="mode"):
        evaluate_pair(cropped, hr, 4, mode="ycbcr")
    with pytest.raises(ValueError, match="uint8 or uint16"):
        evaluate_pair(cropped.astype(np.float32), hr, 4)


def test_evaluate_pair_grey_against_colour():
    """A colour output of a grey HR (bridge.png) is compared as grey, not as 16-235 Y."""
    grey = np.random.default_rng(3).integers(0, 256, (24, 24, 1), dtype=np.uint8)
    as_rgb = np.repeat(grey, 3, axis=2)
    for mode in ("y", "rgb"):
        assert evaluate_pair(as_rgb, grey, 2, mode)["psnr"] == float("inf")
        assert evaluate_pair(grey, as_rgb, 2, mode)["psnr"] == float("inf")


def test_upscale_bicubic():
    lr = np.random.default_rng(4).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    sr = upscale_bicubic(lr, 3)
    assert sr.shape == (27, 21, 3) and sr.dtype == np.uint8
    assert upscale_bicubic(lr[:, :, 0], 2).shape == (18, 14)
    flat = np.full((5, 6, 1), 77, np.uint8)
    np.testing.assert_array_equal(upscale_bicubic(flat, 4), np.full((20, 24, 1), 77))


# ------------------------------------------------------------------------ layout errors


def fake_set(root: Path, scale: int = 2, names=("a", "b"), hr_size=(9, 8), lr_size=None) -> Path:
    for name in names:
        write_image(root / "HR" / f"{name}.png", np.zeros((*hr_size, 3), np.uint8))
        size = lr_size or (hr_size[0] // scale, hr_size[1] // scale)
        write_image(root / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png", np.zeros((*size, 3), np.uint8))
    return root


def test_load_benchmark_reads_a_good_set(tmp_path):
    items = load_benchmark(fake_set(tmp_path / "Tiny"), 2)
    assert [item.name for item in items] == ["a", "b"]
    name, lr, hr = items[0]
    assert lr.shape == (4, 4, 3) and hr.shape == (9, 8, 3)
    assert load_benchmark(str(tmp_path / "Tiny"), 2)[1].name == "b"


def test_load_benchmark_layout_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_benchmark(tmp_path / "nowhere", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty.*no HR/"):
        load_benchmark(tmp_path / "empty", 2)
    root = fake_set(tmp_path / "Tiny")
    with pytest.raises(UserError, match=r"no LR_bicubic/X3/.*found: X2"):
        load_benchmark(root, 3)
    with pytest.raises(UserError, match="positive integer"):
        load_benchmark(root, 0)
    (root / "LR_bicubic" / "X2" / "bx2.png").unlink()
    with pytest.raises(UserError, match=r"no LR image for '.*b\.png'.*bx2\.png"):
        load_benchmark(root, 2)
    wrong = fake_set(tmp_path / "Wrong", lr_size=(5, 4))
    with pytest.raises(UserError, match=r"ax2\.png' is 5x4 .* must be 4x4"):
        load_benchmark(wrong, 2)
    hollow = tmp_path / "Hollow"
    (hollow / "HR").mkdir(parents=True)
    (hollow / "LR_bicubic" / "X2").mkdir(parents=True)
    with pytest.raises(UserError, match="contains no images"):
        load_benchmark(hollow, 2)


def test_hr_only_folders_get_matlab_bicubic_lr(tmp_path):
    """A folder of HR images (BSD100 = BSDS500's images/val), or HR/ without LR_bicubic/, is a set
    whose LR is made here: floor(HR / scale), the project's MATLAB-compatible bicubic."""
    rng = np.random.default_rng(1)
    flat = tmp_path / "Flat"
    for name in ("p", "q"):
        write_image(flat / f"{name}.png", rng.integers(0, 255, (13, 10, 3), dtype=np.uint8))
    items = load_benchmark(flat, 3)
    assert [i.name for i in items] == ["p", "q"] and items[0].lr.shape == (4, 3, 3)
    assert np.array_equal(items[0].lr, bicubic_downscale(items[0].hr, 3))
    hr_only = tmp_path / "HROnly"
    write_image(hr_only / "HR" / "p.png", items[0].hr)
    assert np.array_equal(load_benchmark(hr_only, 3)[0].lr, items[0].lr)
    write_image(tmp_path / "Small" / "s.png", np.zeros((2, 5, 3), np.uint8))
    with pytest.raises(UserError, match="smaller than the scale 3"):
        load_benchmark(tmp_path / "Small", 3)


@pytest.mark.parametrize("name", ["Set5", "Set14"])
def test_hr_only_lr_equals_the_published_lr_files(benchmarks, name):
    from genforge.metrics.psnr_ssim import _hr_only

    for scale in (2, 4):
        made = _hr_only(benchmarks / name / "HR", scale)
        given = load_benchmark(benchmarks / name, scale)
        assert all(np.array_equal(a.lr, b.lr) for a, b in zip(made, given))


def test_bsd100_bicubic_reproduces_the_published_row():
    val = BENCHMARKS.parent / "datasets" / "BSDS500" / "data" / "images" / "val"
    if not val.is_dir():
        pytest.skip(f"BSDS500 not found at {val.parent.parent.parent} (see ../shared/datasets/README.md)")
    result = evaluate_benchmark(load_benchmark(val, 2), 2, upscale_bicubic)
    assert len(result["images"]) == 100 and abs(result["psnr"] - 29.56) < 0.05


def test_detail_ratio_sees_blur_and_noise():
    from genforge.metrics.psnr_ssim import detail_ratio

    rng = np.random.default_rng(2)
    hr = rng.integers(0, 255, (48, 48, 3)).astype(np.uint8)
    hr = upscale_bicubic(hr[::2, ::2], 2)  # natural-ish: some structure at several scales
    blurred = upscale_bicubic(hr[::2, ::2], 2)
    noisy = np.clip(hr + rng.normal(0, 20, hr.shape), 0, 255).astype(np.uint8)
    assert detail_ratio(hr, hr) == pytest.approx(1.0)
    assert detail_ratio(blurred, hr) < 0.8 < 1.2 < detail_ratio(noisy, hr)
    assert np.isnan(detail_ratio(hr, np.zeros_like(hr)))
    assert evaluate_pair(hr, hr, 2)["detail"] == pytest.approx(1.0)
