"""PSNR and SSIM exactly as super-resolution papers report them (Set5, Set14, ...).

The protocol (../shared/benchmarks/README.md): crop HR to a multiple of the scale, compare the
super-resolved image with it on the BT.601 luma Y (16-235, as MATLAB's ``rgb2ycbcr``; a grey
image is its own Y), after shaving ``scale`` pixels from every border; PSNR in float64 with peak
255, SSIM with an 11x11 Gaussian window (sigma 1.5) over the valid region. Small departures
from it (no shave, Y without the 16 offset, rounding Y to uint8, PIL bicubic) move the numbers
by 0.1-0.5 dB, which is more than the gaps between the methods being compared, so every step
here is explicit and tested against the published bicubic row.

``batch_psnr`` is the cheap validation signal of training runs (torch, 8-bit-quantised outputs,
every channel, mean over a batch), not the protocol.

``load_benchmark`` reads a set laid out as ``<set>/HR/<name>.png`` +
``<set>/LR_bicubic/X{s}/<name>x{s}.png``, or a folder of HR images alone (BSD100);
``upscale_bicubic`` is the baseline "model".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from genforge.data.color import LUMA
from genforge.data.degrade import bicubic_downscale, imresize_np
from genforge.data.io import IMAGE_EXTENSIONS, read_image
from genforge.errors import UserError

__all__ = [
    "BenchmarkImage",
    "batch_psnr",
    "crop_to_scale",
    "detail_ratio",
    "evaluate_benchmark",
    "evaluate_pair",
    "load_benchmark",
    "psnr",
    "rgb_to_y",
    "shave",
    "ssim",
    "upscale_bicubic",
]

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0  # MATLAB rgb2ycbcr, rows for [0, 255] input
_LUMA = np.array(LUMA)  # the same weights without the 219/255 range squeeze
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2
_SSIM_SIZE, _SSIM_SIGMA = 11, 1.5


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    return int(scale)


def _as_hwc(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"expected an H x W x C or H x W image, got shape {image.shape}")
    return image


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Y of BT.601 YCbCr (16-235) for an RGB image in [0, 255]: H x W float64.

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``, unrounded. A grey image (H x W or
    H x W x 1) is its own Y, as the benchmark protocol says.
    """
    image = _as_hwc(image).astype(np.float64, copy=False)
    if image.shape[2] == 1:
        return image[:, :, 0].copy()
    if image.shape[2] != 3:
        raise ValueError(f"rgb_to_y needs 1 or 3 channels, got {image.shape[2]}")
    return 16.0 + image @ _Y_WEIGHTS


def crop_to_scale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Crop H x W (x C) to a multiple of ``scale``, keeping the top-left corner."""
    scale = _check_scale(scale)
    height, width = hr.shape[:2]
    return hr[: height - height % scale, : width - width % scale]


def shave(image: np.ndarray, border: int) -> np.ndarray:
    """Remove ``border`` pixels from every side (the scale, in the protocol)."""
    border = int(border)
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    height, width = image.shape[:2]
    if height <= 2 * border or width <= 2 * border:
        raise ValueError(f"image {height}x{width} is too small to shave {border} pixels per side")
    return image[border : height - border, border : width - border] if border else image


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of two same-shape arrays, computed in float64; ``inf`` when identical."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr needs equal shapes, got {a.shape} and {b.shape}")
    mse = np.mean((a - b) ** 2)
    return math.inf if mse == 0 else float(10 * np.log10(peak**2 / mse))


def batch_psnr(fake: torch.Tensor, real: torch.Tensor, *, value_range: tuple[float, float] = (0.0, 1.0),
               shave: int = 0, round_real: bool = False) -> torch.Tensor:
    """Mean PSNR (peak 255) of N x C x H x W outputs in ``value_range``, scored as the 8-bit files a
    user would get: ``fake`` is clamped and rounded to 8 bits. ``round_real`` rounds the targets
    too, for 8-bit images whose trip to ``value_range`` is not exact in float; ``shave`` drops
    border pixels. Each MSE is floored at 1e-10, so a perfect output scores 148 dB, not inf.
    """
    low, high = value_range
    scale = 255.0 / (high - low)
    fake = ((fake.clamp(low, high) - low) * scale).round()
    real = (real - low) * scale
    if round_real:
        real = real.round()
    if shave:
        fake, real = fake[..., shave:-shave, shave:-shave], real[..., shave:-shave, shave:-shave]
    mse = ((fake - real) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return (10 * torch.log10(255.0**2 / mse)).mean()


def _gaussian_window() -> np.ndarray:
    t = np.arange(_SSIM_SIZE) - (_SSIM_SIZE - 1) / 2
    window = np.exp(-(t**2) / (2 * _SSIM_SIGMA**2))
    return window / window.sum()  # the 2-D window is its outer product, as fspecial builds it


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation (MATLAB ``filter2(w, x, 'valid')`` for symmetric w)."""
    n = window.size
    height, width = image.shape
    rows = sum(w * image[i : height - n + 1 + i] for i, w in enumerate(window))
    return sum(w * rows[:, i : width - n + 1 + i] for i, w in enumerate(window))


def _ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    window = _gaussian_window()
    mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    )
    return float(ssim_map.mean())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) of two images in [0, 255]: H x W, or H x W x C averaged over
    channels; Gaussian 11x11 window with sigma 1.5, valid region only, computed in float64."""
    a, b = _as_hwc(a).astype(np.float64), _as_hwc(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim needs equal shapes, got {a.shape} and {b.shape}")
    if min(a.shape[:2]) < _SSIM_SIZE:
        raise ValueError(f"ssim needs images of at least {_SSIM_SIZE}x{_SSIM_SIZE}, got {a.shape[:2]}")
    return float(np.mean([_ssim_2d(a[:, :, c], b[:, :, c]) for c in range(a.shape[2])]))


def _to_255(image: np.ndarray, what: str) -> np.ndarray:
    """uint8/uint16 H x W x C to float64 [0, 255]; alpha is not part of the picture compared."""
    image = _as_hwc(image)
    if image.dtype == np.uint8:
        pixels = image.astype(np.float64)
    elif image.dtype == np.uint16:
        pixels = image.astype(np.float64) / 257.0  # 65535 / 257 = 255
    else:
        raise ValueError(f"{what} must be uint8 or uint16 pixels, got {image.dtype}")
    if pixels.shape[2] in (2, 4):
        pixels = pixels[:, :, :-1]
    return pixels


def _grey(image: np.ndarray) -> np.ndarray:
    if image.shape[2] == 1:
        return image
    if (image == image[:, :, :1]).all():  # replicated grey: exact, no rounding in the luma sum
        return image[:, :, :1]
    return image @ _LUMA[:, None]


def evaluate_pair(sr: np.ndarray, hr: np.ndarray, scale: int, mode: str = "y") -> dict[str, float]:
    """PSNR and SSIM of a super-resolved image against its HR original, by the protocol.

    ``sr`` and ``hr`` are uint8 or uint16 H x W x C arrays; HR is cropped to a multiple of
    ``scale`` and ``sr`` must have exactly that size. ``mode="y"`` compares BT.601 Y (what
    papers report), ``mode="rgb"`` every colour channel. When one image is grey and the other
    RGB (a model that always outputs colour, on Set14's grey ``bridge``), the RGB one is turned
    grey by BT.601 luma (which for R = G = B is the grey value itself).
    """
    if mode not in ("y", "rgb"):
        raise ValueError(f"mode must be 'y' or 'rgb', got {mode!r}")
    scale = _check_scale(scale)
    sr, hr = _to_255(sr, "sr"), crop_to_scale(_to_255(hr, "hr"), scale)
    if sr.shape[:2] != hr.shape[:2]:
        raise ValueError(
            f"sr is {sr.shape[0]}x{sr.shape[1]} but the HR cropped to a multiple of {scale} is "
            f"{hr.shape[0]}x{hr.shape[1]}: the model must output exactly scale x the LR size"
        )
    if sr.shape[2] != hr.shape[2]:
        sr, hr = _grey(sr), _grey(hr)
    if mode == "y":
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    sr, hr = shave(sr, scale), shave(hr, scale)
    return {"psnr": psnr(sr, hr), "ssim": ssim(sr, hr), "detail": detail_ratio(sr, hr)}


def _laplacian_energy(image: np.ndarray) -> float:
    x = image.astype(np.float64)
    if x.ndim == 3:
        x = x.mean(axis=2)
    lap = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    return float(np.mean(lap ** 2))


def detail_ratio(sr: np.ndarray, hr: np.ndarray) -> float:
    """Fine detail of ``sr`` relative to ``hr``: the energy of the 4-neighbour Laplacian of one over that
    of the other (same region, Y or the channel mean). 1 = as much high-frequency content as the ground
    truth; bicubic and pixel-loss models score below 1 (blur), a GAN stage should move it towards 1,
    over-sharpening and noise above. It counts detail, not correct detail: read it beside PSNR/SSIM."""
    reference = _laplacian_energy(hr)
    return _laplacian_energy(sr) / reference if reference > 0 else float("nan")


def upscale_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: MATLAB ``imresize(lr, scale, 'bicubic')``, same dtype as ``lr``.

    Upsampling never antialiases, so this is plain bicubic interpolation (a = -0.5) with
    MATLAB's pixel mapping, mirrored borders and per-pass rounding of integer images.
    """
    scale = _check_scale(scale)
    lr = np.asarray(lr)
    return imresize_np(lr, scale, size=(lr.shape[0] * scale, lr.shape[1] * scale), antialias=False)


# --------------------------------------------------------------------------- benchmark sets


class BenchmarkImage(NamedTuple):
    name: str
    lr: np.ndarray  # H x W x C uint8/uint16, the given LR file
    hr: np.ndarray  # the HR file as stored (not cropped; evaluate_pair crops)


def _image_files(folder: Path) -> dict[str, Path]:
    return {
        path.stem: path
        for path in sorted(folder.iterdir())
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS
    }


def load_benchmark(folder: str | Path, scale: int) -> list[BenchmarkImage]:
    """All (name, lr, hr) of one benchmark set at one scale, sorted by name.

    Expects ``folder/HR/<name>.png`` and ``folder/LR_bicubic/X{scale}/<name>x{scale}.png``
    (any image suffix), with each LR exactly floor(HR / scale) in size. A folder of HR images
    only (BSD100 = BSDS500's images/val, or ``folder/HR`` without LR files) gets its LR made here
    with the MATLAB-compatible bicubic the published LR files were made with. Anything else raises
    ``UserError`` naming the folder or file and what is wrong.
    """
    folder = Path(folder).expanduser()
    try:
        scale = _check_scale(scale)
    except (TypeError, ValueError):
        raise UserError(f"benchmark scale must be a positive integer, got {scale!r}") from None
    if not folder.is_dir():
        raise UserError(f"benchmark folder '{folder}' does not exist or is not a directory")
    hr_dir, lr_dir = folder / "HR", folder / "LR_bicubic" / f"X{scale}"
    if not hr_dir.is_dir():
        if _image_files(folder):
            return _hr_only(folder, scale)
        raise UserError(f"benchmark folder '{folder}' has no HR/ folder (expected {hr_dir}) and no images")
    if not lr_dir.is_dir():
        if not (folder / "LR_bicubic").is_dir():
            return _hr_only(hr_dir, scale)
        have = sorted(p.name for p in (folder / "LR_bicubic").glob("X*") if p.is_dir())
        hint = f" (found: {', '.join(have)})" if have else ""
        raise UserError(f"benchmark folder '{folder}' has no LR_bicubic/X{scale}/ folder{hint}")
    hr_files, lr_files = _image_files(hr_dir), _image_files(lr_dir)
    if not hr_files:
        raise UserError(f"benchmark folder '{hr_dir}' contains no images")
    images = []
    for name, hr_path in hr_files.items():
        lr_path = lr_files.get(f"{name}x{scale}")
        if lr_path is None:
            raise UserError(f"no LR image for '{hr_path}': expected {lr_dir / f'{name}x{scale}.png'}")
        hr, lr = read_image(hr_path), read_image(lr_path)
        expected = (hr.shape[0] // scale, hr.shape[1] // scale)
        if lr.shape[:2] != expected:
            raise UserError(
                f"'{lr_path}' is {lr.shape[0]}x{lr.shape[1]} but HR '{hr_path.name}' is "
                f"{hr.shape[0]}x{hr.shape[1]}: at scale {scale} the LR must be "
                f"{expected[0]}x{expected[1]} (floor of HR / scale)"
            )
        images.append(BenchmarkImage(name, lr, hr))
    return images


def _hr_only(folder: Path, scale: int) -> list[BenchmarkImage]:
    """HR files with LR = MATLAB imresize(modcrop(hr, scale), 1/scale, 'bicubic'), rounded to the
    HR's dtype (what the published LR files of Set5/Set14 are)."""
    images = []
    for name, hr_path in _image_files(folder).items():
        hr = read_image(hr_path)
        if min(hr.shape[:2]) < scale:
            raise UserError(f"'{hr_path}' ({hr.shape[1]}x{hr.shape[0]}) is smaller than the scale {scale}")
        images.append(BenchmarkImage(name, bicubic_downscale(hr, scale), hr))
    return images


def evaluate_benchmark(
    images: list[BenchmarkImage],
    scale: int,
    upscale: Callable[[np.ndarray, int], np.ndarray] = upscale_bicubic,
    mode: str = "y",
) -> dict:
    """Mean PSNR/SSIM of ``upscale(lr, scale)`` over a set, plus the per-image numbers.

    Returns ``{"psnr": mean, "ssim": mean, "images": {name: {"psnr", "ssim"}}}``; papers report
    the mean of per-image PSNRs, not the PSNR of the pooled MSE.
    """
    per_image = {
        item.name: evaluate_pair(upscale(item.lr, scale), item.hr, scale, mode) for item in images
    }
    return {
        "psnr": float(np.mean([r["psnr"] for r in per_image.values()])),
        "ssim": float(np.mean([r["ssim"] for r in per_image.values()])),
        "detail": float(np.nanmean([r["detail"] for r in per_image.values()])),
        "images": per_image,
    }
