"""Adversarial objectives on raw discriminator outputs (logits or critic scores).

softplus forms are used for the cross-entropy losses because they are the numerically stable
way of writing -log(sigmoid(x))."""

import torch
import torch.nn.functional as F
from torch import nn


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator (critic) loss: low when real scores high and fake scores low."""
    if kind == "bce":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind in ("wgan", "wgan-gp"):
        return fake.mean() - real.mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "lsgan":
        return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake ** 2).mean()
    raise ValueError(f"unknown adversarial loss {kind!r}")


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss; for bce the non-saturating form -log D(G(z)) (Goodfellow et al. 2014)."""
    if kind == "bce":
        return F.softplus(-fake).mean()
    if kind in ("wgan", "wgan-gp", "hinge"):
        return -fake.mean()
    if kind == "lsgan":
        return 0.5 * ((fake - 1.0) ** 2).mean()
    raise ValueError(f"unknown adversarial loss {kind!r}")


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, *args, scale=None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 on random interpolates.

    scale: under fp16, the GradScaler's scale() (the gradient is taken of the scaled scores, so
    it does not underflow, and divided by the same device tensor again: no host sync)."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(x_hat, *args).float().sum()
    factor = scale(torch.ones((), device=out.device)) if scale is not None else None
    (grad,) = torch.autograd.grad(out * factor if factor is not None else out, x_hat, create_graph=True)
    grad = grad.float() / factor if factor is not None else grad
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, limit: float) -> None:
    """WGAN's Lipschitz constraint by weight clipping (Arjovsky et al. 2017)."""
    for p in module.parameters():
        p.clamp_(-limit, limit)


def feature_matching(fake_features, real_features) -> torch.Tensor:
    """Mean L1 between discriminator activations of fake and real images (pix2pixHD, SPADE):
    the generator matches the statistics D uses, which steadies adversarial training."""
    pairs = list(zip(fake_features, real_features))
    return sum((f - r.detach()).abs().mean() for f, r in pairs) / len(pairs)


def multiscale_d_loss(kind: str, real_outputs, fake_outputs) -> torch.Tensor:
    """d_loss averaged over the scales of a multi-scale discriminator's (logits, features) list."""
    return sum(d_loss(kind, r[0], f[0]) for r, f in zip(real_outputs, fake_outputs)) / len(real_outputs)


def multiscale_g_loss(kind: str, fake_outputs) -> torch.Tensor:
    return sum(g_loss(kind, f[0]) for f in fake_outputs) / len(fake_outputs)


def multiscale_feature_matching(fake_outputs, real_outputs) -> torch.Tensor:
    return sum(feature_matching(f[1], r[1]) for f, r in zip(fake_outputs, real_outputs)) / len(fake_outputs)
