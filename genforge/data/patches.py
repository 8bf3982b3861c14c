"""Training crops: super-resolution patches (HR and the LR made from it) and translation patches.

Both draw from one ``AreaWeightedPool`` with the generator of ``step_generator``: like
EpochBatches, the batch for step s is a pure function of (seed, s, rank), so resumed runs see the
same data. SR LR patches are made by the MATLAB-compatible antialiased bicubic downscale (the
degradation the benchmark LR files were made with) and rounded to 8 bits as real inputs are.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from genforge.data.color import match_channels
from genforge.data.degrade import imresize
from genforge.data.pair_folders import KINDS, TranslationData
from genforge.errors import UserError

__all__ = ["AreaWeightedPool", "SRPatches", "TranslationPatches", "holdout_pairs", "read_sr_pairs",
           "step_generator", "validation_pairs"]

log = logging.getLogger(__name__)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The random stream of one step's batch on one rank. Changing the formula changes every
    shipped model's training data, so exact resumes and reproductions depend on it staying."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 97 + rank)


class AreaWeightedPool:
    """Crop sources (tuples of tensors sharing a size, the first one giving it) drawn with
    probability proportional to area, so that every pixel is equally likely to be cropped
    whatever the image sizes.

    ``dtype`` is that of the weights; the SR patches use the default float32, the translation
    patches float64, and the draws of either change if it does.
    """

    def __init__(self, items: list[tuple[torch.Tensor, ...]], dtype: torch.dtype | None = None):
        self.items = items
        areas = torch.tensor([float(x[0].shape[-2] * x[0].shape[-1]) for x in items], dtype=dtype)
        self.weights = areas / areas.sum()

    def indices(self, n: int, g: torch.Generator) -> list[int]:
        return torch.multinomial(self.weights, n, replacement=True, generator=g).tolist()


def _to_chw(array: np.ndarray, channels: int) -> torch.Tensor:
    """H x W x C uint8/uint16 -> C x H x W uint8 with `channels` channels (alpha dropped)."""
    if array.dtype == np.uint16:
        array = np.round(array / 257.0).astype(np.uint8)
    x = torch.from_numpy(np.require(array, requirements=["C", "W"])).permute(2, 0, 1)[:3]
    x = match_channels(x, channels)
    return (x.round() if x.is_floating_point() else x).to(torch.uint8).contiguous()


class SRPatches:
    host_side = True  # cut on the CPU: engine.batches.Prefetcher may build them ahead

    def __init__(self, images: list[np.ndarray], *, scale: int, patch_size: int, batch_size: int, seed: int,
                 channels: int = 3, scale_jitter=(1.0,), flips: bool = True, rot90: bool = True,
                 degradation=None, brightness: float = 0.0, contrast: float = 0.0, noise: float = 0.0,
                 lr_images: list[np.ndarray] | None = None, device=torch.device("cpu"), rank: int = 0):
        """lr_images: paired LR inputs (same order as images, floor(HR / scale) in size); without
        them LR patches are made by bicubic downscaling."""
        self.scale, self.patch, self.batch_size = scale, patch_size, batch_size
        self.brightness, self.contrast, self.noise = brightness, contrast, noise
        self.seed, self.rank, self.device = seed, rank, device
        self.flips, self.rot90, self.degradation = flips, rot90, degradation
        pool = []  # (hr,) or, with lr_images, (hr, lr)
        if lr_images is not None:  # pairs: no scale jitter (it would break the pairing)
            pairs = [(_to_chw(h, channels), _to_chw(lo, channels)) for h, lo in zip(images, lr_images)]
            pool = [(h[:, : lo.shape[1] * scale, : lo.shape[2] * scale], lo) for h, lo in pairs
                    if min(lo.shape[1:]) * scale >= patch_size]
            images = []
        for array in images:
            hr = _to_chw(array, channels)
            for factor in scale_jitter:
                img = hr
                if factor != 1.0:  # smaller copies: more texture per patch, like multi-scale DIV2K
                    img = imresize(hr.float()[None] / 255, scale=factor)[0].mul(255).round().clamp(0, 255)
                    img = img.to(torch.uint8)
                if min(img.shape[1:]) >= patch_size:
                    pool.append((img,))
        if not pool:
            raise UserError(f"no training image is at least {patch_size}x{patch_size} pixels (task.patch_size)")
        self.pool = AreaWeightedPool(pool)

    def batch(self, step: int) -> dict:
        g = step_generator(self.seed, step, self.rank)
        crops = []
        s, lr_crops = self.scale, []
        for i in self.pool.indices(self.batch_size, g):
            img, *given_lr = self.pool.items[i]
            # on the LR grid, so that a paired LR crop covers exactly the HR crop
            top = s * int(torch.randint(0, (img.shape[1] - self.patch) // s + 1, (1,), generator=g))
            left = s * int(torch.randint(0, (img.shape[2] - self.patch) // s + 1, (1,), generator=g))
            pair = [img[:, top:top + self.patch, left:left + self.patch]]
            if given_lr:
                p = self.patch // s
                pair.append(given_lr[0][:, top // s:top // s + p, left // s:left // s + p])
            if self.flips and torch.rand(1, generator=g) < 0.5:
                pair = [c.flip(2) for c in pair]
            if self.flips and torch.rand(1, generator=g) < 0.5:
                pair = [c.flip(1) for c in pair]
            if self.rot90 and torch.rand(1, generator=g) < 0.5:
                pair = [c.transpose(1, 2) for c in pair]
            crops.append(pair[0])
            lr_crops += pair[1:]
        hr = torch.stack(crops).float().div_(255)
        n = len(hr)
        if self.brightness or self.contrast:  # lighting changes the scene, so HR and LR alike
            mean = hr.mean(dim=(1, 2, 3), keepdim=True)
            gain = 1 + self.contrast * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
            shift = self.brightness * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
            hr = ((hr - mean) * gain + mean + shift).clamp_(0, 1)
        if lr_crops:
            lr = torch.stack(lr_crops).float().div_(255)
            if self.brightness or self.contrast:  # the same lighting change on the given LR
                lr = ((lr - lr.mean(dim=(1, 2, 3), keepdim=True)) * gain + lr.mean(dim=(1, 2, 3), keepdim=True)
                      + shift).clamp_(0, 1)
        elif self.degradation is not None:
            lr = self.degradation(hr, generator=g)
        else:
            lr = imresize(hr, scale=1 / self.scale).clamp_(0, 1).mul_(255).round_().div_(255)
        if self.noise:  # sensor noise is in the input only: the network learns to remove it
            lr = (lr + self.noise * torch.randn(lr.shape, generator=g)).clamp_(0, 1)
        return {"lr": lr.to(self.device), "hr": hr.to(self.device)}


def validation_pairs(images: list[np.ndarray], *, scale: int, size: int, count: int, channels: int,
                     device=torch.device("cpu")) -> list[dict]:
    """Fixed (lr, hr) centre crops of held-out images, one batch each, for validation PSNR."""
    size -= size % scale
    pairs = []
    for array in images[:count]:
        hr = _to_chw(array, channels)
        h, w = hr.shape[1:]
        s = min(size, h - h % scale, w - w % scale)
        top, left = (h - s) // 2, (w - s) // 2
        crop = hr[:, top:top + s, left:left + s].float()[None] / 255
        lr = imresize(crop, scale=1 / scale).clamp_(0, 1).mul_(255).round_().div_(255)
        pairs.append({"lr": lr.to(device), "hr": crop.to(device)})
    return pairs


def read_sr_pairs(hr_folder: str, lr_folder: str, scale: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Paired HR/LR folders matched by file stem (the LR may carry an `x{scale}` suffix, as the
    benchmark sets do). Every problem is reported by file name before training starts."""
    from pathlib import Path

    from genforge.data.io import list_image_files, read_image
    hr_dir, lr_dir = Path(hr_folder), Path(lr_folder)
    for d, what in ((hr_dir, "HR"), (lr_dir, "LR")):
        if not d.is_dir():
            raise UserError(f"{what} folder {d} does not exist")
    lr_files = {}
    for f in list_image_files(lr_dir):
        stem = str(f.relative_to(lr_dir).with_suffix(""))
        lr_files[stem[: -len(f"x{scale}")] if stem.endswith(f"x{scale}") else stem] = f
    hr_files = {str(f.relative_to(hr_dir).with_suffix("")): f for f in list_image_files(hr_dir)}
    if not hr_files:
        raise UserError(f"HR folder {hr_dir} has no images")
    missing = sorted(set(hr_files) - set(lr_files))
    if missing:
        raise UserError(f"no LR partner in {lr_dir} for {len(missing)} HR image(s), e.g. {hr_files[missing[0]]}")
    hrs, lrs = [], []
    for stem, hr_path in sorted(hr_files.items()):
        hr, lr = read_image(hr_path), read_image(lr_files[stem])
        want = (hr.shape[0] // scale, hr.shape[1] // scale)
        if lr.shape[:2] != want:
            raise UserError(f"{lr_files[stem]} is {lr.shape[1]}x{lr.shape[0]} but {hr_path.name} at x{scale} "
                            f"needs {want[1]}x{want[0]} (floor of HR / scale)")
        hrs.append(hr)
        lrs.append(lr)
    return hrs, lrs


# --------------------------------------------------------------------------- translation crops


def _chw(array: np.ndarray, channels: int) -> torch.Tensor:
    """H x W (x C) uint8 -> C x H x W uint8 with ``channels`` channels (grey repeated to RGB)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"translation images must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    # image readers hand out read-only arrays, which torch.from_numpy warns about: copied then
    x = torch.from_numpy(np.require(array, requirements=["C", "W"])).permute(2, 0, 1)
    if x.shape[0] == 1 and channels == 3:
        x = x.expand(3, -1, -1)
    if x.shape[0] != channels:
        raise ValueError(f"expected {channels} channels, got an image of shape {array.shape}")
    return x.contiguous()


def _downscale(x: torch.Tensor, factor: float, label: bool) -> torch.Tensor:
    """A smaller copy: the project bicubic for images, nearest for class ids (no invented ids)."""
    if label:
        size = [max(1, math.ceil(n * factor - 1e-9)) for n in x.shape[-2:]]
        return F.interpolate(x[None].float(), size=size, mode="nearest-exact")[0].to(torch.uint8)
    return imresize(x.float()[None], scale=factor)[0].round_().clamp_(0, 255).to(torch.uint8)


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(127.5).sub_(1.0)  # uint8 -> [-1, 1], the range tanh generators produce


class _PairPool(AreaWeightedPool):
    """Same-size tensor groups (a paired example, or one image) at every jitter scale."""

    def __init__(self, items: list[tuple[torch.Tensor, ...]], labels: tuple[bool, ...], names: list[str],
                 patch_size: int, scale_jitter, what: str):
        self.labels, pool = labels, []
        small = [name for item, name in zip(items, names) if min(item[0].shape[-2:]) < patch_size]
        if small:
            log.warning("%d %s smaller than patch_size %d skipped, e.g. '%s'", len(small), what, patch_size,
                        small[0])
        for item in items:
            for factor in scale_jitter:
                copy = item if factor == 1.0 else tuple(_downscale(x, factor, lab) for x, lab in zip(item, labels))
                if min(copy[0].shape[-2:]) >= patch_size:
                    pool.append(copy)
        if not pool:
            raise UserError(f"no {what} is at least {patch_size}x{patch_size} pixels (patch_size {patch_size})")
        super().__init__(pool, dtype=torch.float64)

    def draw(self, n: int, patch: int, flips: bool, g: torch.Generator) -> list[torch.Tensor]:
        """n crops of each member; one index, crop and flip per example, shared by its members."""
        idx = self.indices(n, g)
        u = torch.rand(n, 3, generator=g, dtype=torch.float64).tolist()
        crops = [[] for _ in self.items[0]]
        for i, (ut, ul, uf) in zip(idx, u):
            item = self.items[i]
            height, width = item[0].shape[-2:]
            for _ in range(self.FLAT_RETRIES):
                top, left = int(ut * (height - patch + 1)), int(ul * (width - patch + 1))
                if not self._flat(item, top, left, patch):
                    break
                ut, ul = torch.rand(2, generator=g, dtype=torch.float64).tolist()
            for out, x in zip(crops, item):
                crop = x[..., top : top + patch, left : left + patch]
                out.append(crop.flip(-1) if flips and uf < 0.5 else crop)
        return [torch.stack(c) for c in crops]

    # A flat crop (a poster's sky, an edge map without edges) carries nothing to learn, and through a
    # chain of instance norms (each dividing by sqrt(var + eps) with var = 0) its gradient grows by
    # up to 1/sqrt(eps) per layer until it overflows; such crops are redrawn (a few times at most).
    FLAT_RETRIES = 8

    def _flat(self, item, top: int, left: int, patch: int) -> bool:
        for x, is_label in zip(item, self.labels):
            if not is_label:
                crop = x[..., top : top + patch, left : left + patch]
                if int(crop.max()) - int(crop.min()) <= 2:
                    return True
        return False


class TranslationPatches:
    """Random training crops of translation data.

    Like ``SRPatches``, the batch for step s is a pure function of (seed, s, rank), so a resumed
    run sees the same data. Paired and semantic examples share one crop and one horizontal flip
    between the partners; unpaired domains are drawn independently (own indices, crops, flips).
    Images smaller than ``patch_size`` are skipped with one warning; ``scale_jitter`` adds
    downscaled copies (bicubic for images, nearest for label maps).
    """

    host_side = True  # cut on the CPU: engine.batches.Prefetcher may build them ahead

    def __init__(self, data: TranslationData, *, patch_size: int, batch_size: int, seed: int,
                 flips: bool = True, scale_jitter=(1.0,), device=torch.device("cpu"), rank: int = 0):
        if data.kind not in KINDS:
            raise ValueError(f"unknown translation data kind {data.kind!r}")
        self.kind, self.patch, self.batch_size = data.kind, patch_size, batch_size
        self.seed, self.rank, self.flips, self.device = seed, rank, flips, torch.device(device)
        jitter = tuple(float(f) for f in scale_jitter)
        if data.kind == "unpaired":
            self.pools = [
                _PairPool([(_chw(x, data.a_channels),) for x in data.a], (False,), data.names_a, patch_size, jitter,
                      "domain A image(s)"),
                _PairPool([(_chw(x, data.b_channels),) for x in data.b], (False,), data.names_b, patch_size, jitter,
                      "domain B image(s)"),
            ]
        else:
            semantic = data.kind == "semantic"
            a_channels = 1 if semantic else data.a_channels
            b_channels = 3 if semantic else data.b_channels
            items = [(_chw(a, a_channels), _chw(b, b_channels)) for a, b in zip(data.a, data.b)]
            self.pools = [_PairPool(items, (semantic, False), data.names_a, patch_size, jitter, "pair(s)")]

    def batch(self, step: int) -> dict:
        g = step_generator(self.seed, step, self.rank)
        n, p = self.batch_size, self.patch
        if self.kind == "unpaired":
            (a,), (b,) = (pool.draw(n, p, self.flips, g) for pool in self.pools)
        else:
            a, b = self.pools[0].draw(n, p, self.flips, g)
        out = {"b": _to_unit(b)}
        if self.kind == "semantic":
            out["label"] = a[:, 0].long()
        else:
            out["a"] = _to_unit(a)
        return {key: value.to(self.device) for key, value in out.items()}


def holdout_pairs(data: TranslationData, *, size: int, count: int | None = None, multiple: int = 1) -> list[dict]:
    """Fixed centre crops for validation, evaluation and the demo, one dict per image, batch of 1.

    The crop is square, side min(size, H, W) rounded down to ``multiple`` (what the network's
    down/up-sampling needs). Keys as in ``TranslationPatches.batch``; for unpaired data ``b`` is
    the true mapping of ``a`` when it is known (the score target) and absent otherwise.
    """
    if multiple < 1 or size < multiple:
        raise UserError(f"holdout crop size {size} must be at least the size multiple {multiple} (>= 1)")
    truth = data.truth if data.kind == "unpaired" else data.b
    semantic = data.kind == "semantic"
    out = []
    for i, a in enumerate(data.a[:count]):
        height, width = a.shape[:2]
        side = min(size, height, width)
        side -= side % multiple
        if side == 0:
            raise UserError(f"holdout image '{data.names_a[i]}' ({width}x{height}) is smaller than the "
                            f"size multiple {multiple} the network needs")
        top, left = (height - side) // 2, (width - side) // 2

        def crop(array: np.ndarray, channels: int, top=top, left=left, side=side) -> torch.Tensor:
            return _chw(array, channels)[None, :, top : top + side, left : left + side]

        pair = {}
        if semantic:
            pair["label"] = crop(a, 1)[:, 0].long()
        else:
            pair["a"] = _to_unit(crop(a, data.a_channels))
        if truth is not None:
            pair["b"] = _to_unit(crop(truth[i], 3 if semantic else data.b_channels))
        out.append(pair)
    return out
