"""Super-resolution training batches: random HR patches and their LR made on the fly.

Like EpochBatches, the batch for step s is a pure function of (seed, s), so resumed runs see the
same data. LR patches are made by the MATLAB-compatible antialiased bicubic downscale (the
degradation the benchmark LR files were made with) and rounded to 8 bits as real inputs are."""

import numpy as np
import torch

from genforge.data.degrade import imresize


def _to_chw(array: np.ndarray, channels: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(array))
    if x.dtype == torch.uint16 if hasattr(torch, "uint16") else False:
        x = (x.float() / 257).round().to(torch.uint8)
    x = x.permute(2, 0, 1)
    if x.shape[0] == 4:
        x = x[:3]
    if channels == 3 and x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    elif channels == 1 and x.shape[0] == 3:
        x = (x.float() * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True).round()
    return x.to(torch.uint8).contiguous()


class SRPatches:
    def __init__(self, images: list[np.ndarray], *, scale: int, patch_size: int, batch_size: int, seed: int,
                 channels: int = 3, scale_jitter=(1.0,), flips: bool = True, rot90: bool = True,
                 degradation=None, brightness: float = 0.0, contrast: float = 0.0, noise: float = 0.0,
                 device=torch.device("cpu"), rank: int = 0):
        self.scale, self.patch, self.batch_size = scale, patch_size, batch_size
        self.brightness, self.contrast, self.noise = brightness, contrast, noise
        self.seed, self.rank, self.device = seed, rank, device
        self.flips, self.rot90, self.degradation = flips, rot90, degradation
        pool = []
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
        for i in idx.tolist():
            img = self.pool[i]
            top = int(torch.randint(0, img.shape[1] - self.patch + 1, (1,), generator=g))
            left = int(torch.randint(0, img.shape[2] - self.patch + 1, (1,), generator=g))
            crop = img[:, top:top + self.patch, left:left + self.patch]
            if self.flips and torch.rand(1, generator=g) < 0.5:
                crop = crop.flip(2)
            if self.flips and torch.rand(1, generator=g) < 0.5:
                crop = crop.flip(1)
            if self.rot90 and torch.rand(1, generator=g) < 0.5:
                crop = crop.transpose(1, 2)
            crops.append(crop)
        hr = torch.stack(crops).float().div_(255)
        n = len(hr)
        if self.brightness or self.contrast:  # lighting changes the scene, so HR and LR alike
            mean = hr.mean(dim=(1, 2, 3), keepdim=True)
            gain = 1 + self.contrast * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
            shift = self.brightness * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
            hr = ((hr - mean) * gain + mean + shift).clamp_(0, 1)
        if self.degradation is not None:
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
