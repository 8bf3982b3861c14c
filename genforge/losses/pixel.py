import torch
import torch.nn.functional as F


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Differentiable L1 (Lai et al. 2017, LapSRN)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def reconstruction(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image reconstruction error summed over pixels (the ELBO's likelihood term), batch mean.

    Images are in [-1, 1]; "bce" treats (x + 1) / 2 as Bernoulli means, "mse" is a unit Gaussian."""
    if kind == "bce":  # in fp32: binary_cross_entropy refuses to run under CUDA autocast
        with torch.autocast(pred.device.type, enabled=False):
            p = ((pred.float() + 1) / 2).clamp(1e-6, 1 - 1e-6)
            per_pixel = F.binary_cross_entropy(p, (target.float() + 1) / 2, reduction="none")
    elif kind == "mse":
        per_pixel = 0.5 * (pred - target) ** 2
    elif kind == "l1":
        per_pixel = (pred - target).abs()
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}")
    return per_pixel.flatten(1).sum(1).mean()


def census(pred: torch.Tensor, target: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Soft ternary census loss (Meister et al. 2018, as in frame-interpolation work): compares each
    pixel's brightness order relative to its (2 radius + 1)^2 neighbours, so it rewards structure
    in the right place and ignores brightness offsets. Images in [0, 1], any channel count."""
    def transform(x):
        grey = x.mean(dim=1, keepdim=True) * 255
        k = 2 * radius + 1
        patches = F.unfold(F.pad(grey, [radius] * 4, mode="replicate"), k).view(x.shape[0], k * k, *x.shape[-2:])
        diff = patches - grey
        return diff / torch.sqrt(0.81 + diff * diff)

    d = transform(pred) - transform(target)
    return (d * d / (0.1 + d * d)).mean()
