"""Drawing images from a generator (z [+ labels] -> images), batched, with a private RNG so that
sampling never disturbs the training RNG stream."""

import torch
from torch import nn


@torch.inference_mode()
def generate(generator: nn.Module, n: int, *, labels: torch.Tensor | None = None, seed: int = 0,
             batch_size: int = 256, z: torch.Tensor | None = None) -> torch.Tensor:
    """n images in [-1, 1] on the generator's device; random labels when conditional and none given."""
    device = next(generator.parameters()).device
    rng = torch.Generator(device="cpu").manual_seed(seed)
    if z is None:
        z = torch.randn(n, generator.latent_dim, generator=rng)
    if generator.num_classes:
        if labels is None:
            labels = torch.randint(0, generator.num_classes, (n,), generator=rng)
        labels = labels.to(device)
    was_training = generator.training
    generator.eval()
    out = []
    for i in range(0, n, batch_size):
        args = (labels[i:i + batch_size],) if generator.num_classes else ()
        out.append(generator(z[i:i + batch_size].to(device), *args))
    generator.train(was_training)
    return torch.cat(out)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: Gaussian latents keep a typical norm along the path."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def interpolation_latents(latent_dim: int, rows: int, steps: int, seed: int = 0) -> torch.Tensor:
    """rows x steps latents: each row walks from one random z to another."""
    rng = torch.Generator().manual_seed(seed)
    a, b = torch.randn(rows, 1, latent_dim, generator=rng), torch.randn(rows, 1, latent_dim, generator=rng)
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    return slerp(a, b, t).reshape(rows * steps, latent_dim)
