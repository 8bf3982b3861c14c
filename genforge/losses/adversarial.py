"""Adversarial objectives on raw discriminator outputs (logits or critic scores).

softplus forms are used for the cross-entropy losses because they are the numerically stable
way of writing -log(sigmoid(x))."""

import torch
import torch.nn.functional as F
from torch import nn

ADVERSARIAL_LOSSES = ("bce", "wgan", "wgan-gp", "hinge", "lsgan")


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


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, *args) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 on random interpolates."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat, *args)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, limit: float) -> None:
    """WGAN's Lipschitz constraint by weight clipping (Arjovsky et al. 2017)."""
    for p in module.parameters():
        p.clamp_(-limit, limit)
