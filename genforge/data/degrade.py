"""Image degradations for super-resolution: MATLAB-compatible bicubic resize, blur, noise, JPEG.

``imresize`` reproduces MATLAB's ``imresize(..., 'bicubic')``, because the LR files of the
standard benchmarks (Set5, Set14, ...) and every published bicubic baseline were made with it;
PyTorch's and Pillow's bicubic differ (kernel a = -0.75 or no antialiasing, other boundaries) by
more than the 0.1 dB papers argue about. What MATLAB does, per dimension:

* output pixel ``i`` (1-based) maps to input coordinate ``u = i / s + (1 - 1 / s) / 2``;
* the cubic kernel (a = -0.5) is stretched by ``1 / s`` when shrinking (antialiasing), so it
  averages over the area an output pixel covers, and the weights of each output are normalised;
* taps outside the image read its mirror image (``... 3 2 1 1 2 3 ... n n n-1 ...``);
* the dimension with the smaller scale is resized first.

Each 1-D pass is one gather and one batched matrix product (block-banded weights), on
tensors of any value range.

The real-world degradations (``gaussian_blur``, ``add_noise``, ``jpeg``, ``Degradation``) work
on float B x C x H x W tensors in [0, 1] and draw all randomness from an optional
``torch.Generator``, so a seeded generator gives the same LR images every run.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "Degradation",
    "add_noise",
    "bicubic_downscale",
    "gaussian_blur",
    "imresize",
    "imresize_np",
    "jpeg",
]

_SIZE_TOLERANCE = 1e-9  # ceil(255 * (1/3)) must be 85 even if the product lands a hair above


# --------------------------------------------------------------------------- bicubic resize


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's choice; PyTorch uses -0.75)."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def _contributions(
    in_length: int, out_length: int, scale: float, antialias: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input indices (0-based) and weights, both out_length x taps, for one dimension."""
    width = 4.0  # support of the cubic kernel
    stretch = scale < 1 and antialias
    if stretch:
        width /= scale
    x = torch.arange(1, out_length + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of each output pixel
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    index = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    distance = u[:, None] - index
    weights = scale * _cubic(scale * distance) if stretch else _cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # mirror: the index sequence 1..n, n..1 repeats, so out-of-range taps read reflected pixels
    period = 2 * in_length
    index = (index.long() - 1) % period
    index = torch.where(index < in_length, index, period - 1 - index)
    used = weights.ne(0).any(dim=0)  # drop all-zero tap columns (MATLAB does too), saves work
    return index[:, used], weights[:, used]


def _resize_dim(x: torch.Tensor, dim: int, out_length: int, scale: float, antialias: bool):
    """Resize along ``dim`` as a block-banded matrix product.

    Consecutive outputs are grouped in blocks; each block reads one short run of inputs, so
    the resize is one gather (blocks x run) and one batched product with small dense blocks
    of weights. That is about 2x the multiply-adds of a per-tap gather but several times
    faster on CPU, and, being two large operations, it also parallelises, where a Python loop
    of small ones stalls on thread synchronisation when the cores are busy.
    """
    in_length = x.shape[dim]
    run, local = _resize_operator(in_length, out_length, float(scale), bool(antialias), x.device, x.dtype)
    moved = x.movedim(dim, 0)  # the resized axis first, the rest flattened behind it: one 2-D matrix
    rows = moved.contiguous().view(in_length, -1)
    gathered = rows.index_select(0, run.flatten()).view(*run.shape, -1)
    out = torch.bmm(local, gathered).view(-1, *moved.shape[1:])
    return out[:out_length].movedim(0, dim)


@functools.lru_cache(maxsize=128)
def _resize_operator(in_length: int, out_length: int, scale: float, antialias: bool, device: torch.device,
                     dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(input rows each block reads, blocks x block x span weights), once per size, scale and device:
    training resizes the same sizes every step (LR patches, LapSRN's targets); no copies per call."""
    index, weights = _contributions(in_length, out_length, scale, antialias)
    taps = index.shape[1]
    block = max(8, math.ceil(taps * scale))  # inputs read per block ~ 2 x taps
    blocks = -(-out_length // block)
    pad = blocks * block - out_length  # the last block is filled with copies of the last row
    index = torch.cat([index, index[-1:].expand(pad, -1)]).view(blocks, block, taps)
    weights = torch.cat([weights, weights[-1:].expand(pad, -1)]).view(blocks, block, taps)
    low = index.flatten(1).min(dim=1).values  # first input each block reads
    span = int((index.flatten(1).max(dim=1).values - low).max()) + 1
    local = torch.zeros(blocks, block, span, dtype=torch.float64)
    local.scatter_add_(2, index - low.view(-1, 1, 1), weights)  # mirrored taps may coincide
    run = (low.view(-1, 1) + torch.arange(span)).clamp_(max=in_length - 1)  # zero weight past the end
    return run.to(device), local.to(device, dtype)


def _output_size(
    height: int, width: int, scale: float | Sequence[float] | None, size: Sequence[int] | None
) -> tuple[tuple[int, int], tuple[float, float]]:
    if scale is None and size is None:
        raise ValueError("imresize needs a scale or a size")
    if scale is not None:
        scales = tuple(float(s) for s in scale) if isinstance(scale, Sequence) else (float(scale),) * 2
        if len(scales) != 2 or not all(math.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"scale must be a positive number (or two), got {scale!r}")
    if size is not None:
        if len(size) != 2 or not all(int(n) == n and n >= 1 for n in size):
            raise ValueError(f"size must be two positive integers (height, width), got {size!r}")
        out = (int(size[0]), int(size[1]))
        if scale is None:  # MATLAB: the scale of each dimension follows from the sizes
            scales = (out[0] / height, out[1] / width)
    else:
        out = tuple(max(1, math.ceil(n * s - _SIZE_TOLERANCE)) for n, s in zip((height, width), scales))
    return out, scales


def imresize(
    x: torch.Tensor,
    scale: float | tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """MATLAB ``imresize(x, scale)`` / ``imresize(x, size)`` with the bicubic kernel.

    ``x`` is a float tensor B x C x H x W or C x H x W of any value range (integer tensors are
    converted to float32). With ``scale`` (one number, or one per dimension) the output is
    ``ceil(H * scale)`` x ``ceil(W * scale)`` as in MATLAB; with ``size`` it is exactly
    ``size``, so ``floor`` sizes are asked for explicitly. Given both, ``size`` sets the output
    and ``scale`` the pixel mapping. No clamping: bicubic overshoots, the caller rounds or clamps.
    The result may be a non-contiguous view (``.contiguous()`` it if a kernel needs that).
    """
    return _imresize(x, scale, size, antialias, None)


def _imresize(x, scale, size, antialias, limits: tuple[float, float] | None) -> torch.Tensor:
    if x.dim() not in (3, 4):
        raise ValueError(f"imresize expects C x H x W or B x C x H x W, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    height, width = x.shape[-2:]
    (out_h, out_w), (scale_h, scale_w) = _output_size(height, width, scale, size)
    passes = [(-2, out_h, scale_h), (-1, out_w, scale_w)]
    if scale_w < scale_h:  # MATLAB resizes along the most-shrunk dimension first
        passes.reverse()
    for dim, length, s in passes:
        if length != x.shape[dim] or s != 1:
            x = _resize_dim(x, dim, length, s, antialias)
            if limits is not None:
                x = _round_half_away(x).clamp_(*limits)
    return x


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's round (ties away from zero); torch.round sends ties to even."""
    return x.abs().add_(0.5).floor_().copysign_(x)


def imresize_np(
    image: np.ndarray,
    scale: float | tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """``imresize`` for an H x W x C (or H x W) numpy array.

    Float arrays come back float64 and unclamped. Integer arrays (uint8, uint16) are handled as
    MATLAB does: computed in float64, but rounded (ties away from zero) and saturated to the
    dtype after *each* of the two 1-D passes, not only at the end. That intermediate rounding
    is what makes the benchmark LR files bit-exact; rounding only once differs by 1 grey level
    on ~12% of pixels and by up to ~12 where sharp edges overshoot.
    """
    array = np.asarray(image)
    flat = array.ndim == 2
    if flat:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"imresize_np expects H x W x C or H x W, got shape {array.shape}")
    limits = None
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        limits = (float(info.min), float(info.max))
    x = torch.from_numpy(array.astype(np.float64)).permute(2, 0, 1)
    out = _imresize(x, scale, size, antialias, limits).permute(1, 2, 0).numpy()
    if limits is not None:
        out = out.astype(array.dtype)
    return out[:, :, 0] if flat else out


def bicubic_downscale(hr: np.ndarray | torch.Tensor, scale: int) -> np.ndarray | torch.Tensor:
    """The LR image of the SR benchmarks: MATLAB ``imresize(hr, 1/scale, 'bicubic')``.

    HR is first cropped to a multiple of ``scale`` (top-left anchored), so the LR is
    floor(H / scale) x floor(W / scale). A uint8/uint16 H x W x C array gives a rounded array of
    the same dtype; a float tensor (C x H x W or B x C x H x W) gives an unrounded float tensor.
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    if isinstance(hr, torch.Tensor):
        height, width = hr.shape[-2:]
        hr = hr[..., : height - height % scale, : width - width % scale]
        return imresize(hr, 1 / scale, size=(height // scale, width // scale))
    height, width = hr.shape[:2]
    hr = hr[: height - height % scale, : width - width % scale]
    return imresize_np(hr, 1 / scale, size=(height // scale, width // scale))


# --------------------------------------------------------------------------- degradations


def _per_image(value, batch: int, name: str) -> list[float]:
    """A number for the whole batch, or one per image, as a list of floats."""
    if isinstance(value, torch.Tensor):
        value = value.tolist() if value.dim() else value.item()
    if isinstance(value, (int, float)):
        return [float(value)] * batch
    values = [float(v) for v in value]
    if len(values) != batch:
        raise ValueError(f"{name}: got {len(values)} values for a batch of {batch}")
    return values


def _check_batch(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"{what} expects a float B x C x H x W tensor, got {x.dtype} {tuple(x.shape)}")


def _gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return (kernel / kernel.sum()).to(device, dtype)


def gaussian_blur(x: torch.Tensor, sigma: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Isotropic Gaussian blur (kernel radius ceil(3 sigma), mirrored borders).

    ``sigma`` in pixels, one for the batch or one per image; 0 leaves an image unchanged.
    """
    _check_batch(x, "gaussian_blur")
    sigmas = _per_image(sigma, x.shape[0], "sigma")
    if any(s < 0 for s in sigmas):
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    out = x.clone()
    channels = x.shape[1]
    for i, s in enumerate(sigmas):
        if s == 0:
            continue
        kernel = _gaussian_kernel(s, x.dtype, x.device)
        radius = kernel.numel() // 2
        image = x[i : i + 1]
        # reflect padding needs pad < size; replicate covers tiny images
        mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
        image = F.pad(image, (radius, radius, radius, radius), mode=mode)
        image = F.conv2d(image, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
        image = F.conv2d(image, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
        out[i : i + 1] = image
    return out


def add_noise(
    x: torch.Tensor,
    sigma: float | Sequence[float] | torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Additive Gaussian noise with standard deviation ``sigma`` (in [0, 1] units, one for the
    batch or one per image), independent per pixel and channel, clamped to [0, 1]."""
    _check_batch(x, "add_noise")
    sigmas = _per_image(sigma, x.shape[0], "sigma")
    if any(s < 0 for s in sigmas):
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
    std = torch.tensor(sigmas, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
    return (x + noise * std).clamp_(0, 1)


def jpeg(x: torch.Tensor, quality: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """JPEG compression round trip through Pillow (4:2:0 chroma, as cameras and the web use).

    ``quality`` in 1..100, one for the batch or one per image. Images must have 1 or 3
    channels; the result is quantised to 8 bits like any decoded JPEG.
    """
    _check_batch(x, "jpeg")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"jpeg needs 1 or 3 channels, got {x.shape[1]}")
    qualities = [int(round(q)) for q in _per_image(quality, x.shape[0], "quality")]
    if any(not 1 <= q <= 100 for q in qualities):
        raise ValueError(f"quality must be in 1..100, got {quality!r}")
    pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for image, q in zip(pixels, qualities):
        pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=q)
        buffer.seek(0)
        with Image.open(buffer) as im:
            array = np.asarray(im.convert(pil.mode))
        decoded.append(array.reshape(image.shape))
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)
    return out.to(x.device, x.dtype).div_(255)


def _uniform(low: float, high: float, n: int, generator: torch.Generator | None) -> list[float]:
    return (low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)).tolist()


def _chosen(probability: float, n: int, generator: torch.Generator | None) -> list[bool]:
    return (torch.rand(n, generator=generator, dtype=torch.float64) < probability).tolist()


def _range(value, name: str, low: float, high: float) -> tuple[float, float]:
    pair = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
        raise ValueError(f"{name} must be a number or a (min, max) pair within [{low}, {high}], got {value!r}")
    return float(pair[0]), float(pair[1])


class Degradation:
    """A random real-world degradation: blur -> bicubic downscale -> noise -> JPEG.

    Each step is applied to each image with its own probability and a strength drawn uniformly
    from its range (blur sigma in HR pixels, noise sigma in [0, 1] units, JPEG quality 1..100).
    Calling it on a float B x C x H x W batch in [0, 1] gives the LR batch,
    floor(H / scale) x floor(W / scale), in [0, 1]. All draws come from ``generator`` (or the
    global RNG), in a fixed order, so a seeded generator reproduces the batch exactly.
    """

    def __init__(
        self,
        scale: int,
        blur_sigma: float | tuple[float, float] = (0.2, 2.0),
        noise_sigma: float | tuple[float, float] = (0.0, 10 / 255),
        jpeg_quality: int | tuple[int, int] = (40, 95),
        blur_prob: float = 0.5,
        noise_prob: float = 0.5,
        jpeg_prob: float = 0.5,
    ):
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.scale = int(scale)
        self.blur_sigma = _range(blur_sigma, "blur_sigma", 0.0, math.inf)
        self.noise_sigma = _range(noise_sigma, "noise_sigma", 0.0, 1.0)
        self.jpeg_quality = _range(jpeg_quality, "jpeg_quality", 1, 100)
        for name, p in (("blur_prob", blur_prob), ("noise_prob", noise_prob), ("jpeg_prob", jpeg_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {p!r}")
        self.blur_prob, self.noise_prob, self.jpeg_prob = blur_prob, noise_prob, jpeg_prob

    def __repr__(self) -> str:
        return (
            f"Degradation(scale={self.scale}, blur_sigma={self.blur_sigma}, "
            f"noise_sigma={self.noise_sigma}, jpeg_quality={self.jpeg_quality}, "
            f"blur_prob={self.blur_prob}, noise_prob={self.noise_prob}, jpeg_prob={self.jpeg_prob})"
        )

    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_batch(hr, "Degradation")
        n = hr.shape[0]
        # every draw happens regardless of the coin flips, so one image's choices never shift
        # the random stream of the next
        blur = [s if on else 0.0 for s, on in zip(
            _uniform(*self.blur_sigma, n, generator), _chosen(self.blur_prob, n, generator))]
        noise = [s if on else 0.0 for s, on in zip(
            _uniform(*self.noise_sigma, n, generator), _chosen(self.noise_prob, n, generator))]
        quality = _uniform(self.jpeg_quality[0], self.jpeg_quality[1], n, generator)
        compress = _chosen(self.jpeg_prob, n, generator)

        x = gaussian_blur(hr, blur) if any(blur) else hr
        x = bicubic_downscale(x, self.scale).clamp_(0, 1)
        if any(noise):
            x = add_noise(x, noise, generator)
        if any(compress):
            chosen = torch.tensor(compress, device=x.device)
            x = torch.where(chosen.view(-1, 1, 1, 1), jpeg(x, quality), x)
        return x
