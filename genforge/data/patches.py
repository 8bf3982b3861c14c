"""Super-resolution training batches: random HR patches and their LR made on the fly.

Like EpochBatches, the batch for step s is a pure function of (seed, s), so resumed runs see the
same data. LR patches are made by the MATLAB-compatible antialiased bicubic downscale (the
degradation the benchmark LR files were made with) and rounded to 8 bits as real inputs are."""

import numpy as np
import torch

from genforge.data.color import match_channels
from genforge.data.degrade import imresize


def _to_chw(array: np.ndarray, channels: int) -> torch.Tensor:
    """H x W x C uint8/uint16 -> C x H x W uint8 with `channels` channels (alpha dropped)."""
    if array.dtype == np.uint16:
        array = np.round(array / 257.0).astype(np.uint8)
    x = torch.from_numpy(np.require(array, requirements=["C", "W"])).permute(2, 0, 1)[:3]
    x = match_channels(x, channels)
    return (x.round() if x.is_floating_point() else x).to(torch.uint8).contiguous()


class SRPatches:
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
        pool = []
        self.lr_pool = None
        if lr_images is not None:  # pairs: no scale jitter (it would break the pairing)
            pairs = [(_to_chw(h, channels), _to_chw(lo, channels)) for h, lo in zip(images, lr_images)]
            pairs = [(h[:, : lo.shape[1] * scale, : lo.shape[2] * scale], lo) for h, lo in pairs
                     if min(lo.shape[1:]) * scale >= patch_size]
            pool, self.lr_pool = [h for h, _ in pairs], [lo for _, lo in pairs]
            images = []
        for array in images:
            hr = _to_chw(array, channels)
            for factor in scale_jitter:
                img = hr
                if factor != 1.0:  # smaller copies: more texture per patch, like multi-scale DIV2K
                    img = imresize(hr.float()[None] / 255, scale=factor)[0].mul(255).round().clamp(0, 255)
                    img = img.to(torch.uint8)
                if min(img.shape[1:]) >= patch_size:
                    pool.append(img)
        if not pool:
            from genforge.errors import UserError
            raise UserError(f"no training image is at least {patch_size}x{patch_size} pixels (task.patch_size)")
        self.pool = pool
        areas = torch.tensor([float(p.shape[1] * p.shape[2]) for p in pool])
        self.weights = areas / areas.sum()

    def batch(self, step: int) -> dict:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 97 + self.rank)
        idx = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=g)
        crops = []
        s, lr_crops = self.scale, []
        for i in idx.tolist():
            img = self.pool[i]
            # on the LR grid, so that a paired LR crop covers exactly the HR crop
            top = s * int(torch.randint(0, (img.shape[1] - self.patch) // s + 1, (1,), generator=g))
            left = s * int(torch.randint(0, (img.shape[2] - self.patch) // s + 1, (1,), generator=g))
            pair = [img[:, top:top + self.patch, left:left + self.patch]]
            if self.lr_pool is not None:
                p = self.patch // s
                pair.append(self.lr_pool[i][:, top // s:top // s + p, left // s:left // s + p])
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
    from genforge.errors import UserError
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
