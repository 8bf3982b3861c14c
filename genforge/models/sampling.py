"""Drawing images from a generator (z [+ labels] -> images), batched, with a private RNG so that
sampling never disturbs the training RNG stream."""

import copy

import torch
from torch import nn


@torch.inference_mode()
def generate(generator: nn.Module, n: int, *, labels: torch.Tensor | None = None, seed: int = 0,
             batch_size: int = 256, z: torch.Tensor | None = None) -> torch.Tensor:
    """n images in [-1, 1] on the generator's device; random labels when conditional and none given."""
    device = next(generator.parameters()).device
    rng = torch.Generator(device="cpu").manual_seed(seed)
    if z is None:
        z = draw_latents(generator, n, rng)
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


PRIOR_TENSORS = ("prior_weights", "prior_means", "prior_scale_tril")


def prior_tensors(generator) -> dict[str, torch.Tensor]:
    """The fitted latent density a generator carries (models/vae.py: a Gaussian mixture over z fitted to
    the encoder's posteriors after training), as CPU float tensors; {} when it has none or it is not fitted."""
    weights = getattr(generator, "prior_weights", None)
    if weights is None or weights.numel() == 0 or not float(weights.sum()) > 0:
        return {}
    return {name: getattr(generator, name).detach().cpu().float() for name in PRIOR_TENSORS}


def draw_latents(generator, n: int, rng: torch.Generator, prior: dict | None = None) -> torch.Tensor:
    """z (n, latent_dim) on the CPU from `rng`: from the generator's fitted mixture when it carries one
    (a component by its weight, then its mean + scale_tril @ eps), else standard normal. `prior`: the
    generator's prior_tensors(), when the caller has them already."""
    prior = prior_tensors(generator) if prior is None else prior
    if not prior:
        return torch.randn(n, generator.latent_dim, generator=rng)
    component = torch.multinomial(prior["prior_weights"], n, replacement=True, generator=rng)
    eps = torch.randn(n, generator.latent_dim, 1, generator=rng)
    return prior["prior_means"][component] + (prior["prior_scale_tril"][component] @ eps).squeeze(-1)


def latent_codes(generator: nn.Module, n: int, rng: torch.Generator) -> tuple[torch.Tensor, ...]:
    """An image generator's inputs but the labels: z (n, latent_dim) from its prior (draw_latents)."""
    return (draw_latents(generator, n, rng),)


@torch.no_grad()
def standing_batchnorm(generator: nn.Module, *, batches: int = 8, batch_size: int = 128, seed: int = 0,
                       codes=latent_codes) -> nn.Module:
    """A copy of `generator` whose batch-norm statistics are measured on its own outputs.

    An EMA generator's weights are an average over training while its batch-norm running
    statistics come from the live network; recomputing them for the averaged weights ("standing
    statistics", BigGAN) removes that mismatch. The inputs are only codes [+ labels], so no data is
    needed: `codes(generator, n, rng)` draws a batch's codes but the labels on the CPU (default: z;
    a video generator's: content and motion codes); the RNG is private. Without batch norm the
    generator itself is returned."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in generator.modules()):
        return generator
    out = copy.deepcopy(generator).train()
    norms = [m for m in out.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    device = next(out.parameters()).device
    rng = torch.Generator(device="cpu").manual_seed(seed)
    for _ in range(batches):
        inputs = [c.to(device) for c in codes(out, batch_size, rng)]
        labels = (torch.randint(0, out.num_classes, (batch_size,), generator=rng).to(device),) \
            if out.num_classes else ()
        out(*inputs, *labels)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return out.train(generator.training)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation: Gaussian latents keep a typical norm along the path."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def interpolation_latents(generator, rows: int, steps: int, seed: int = 0) -> torch.Tensor:
    """rows x steps latents: each row walks from one z drawn from the generator's prior to another, on
    the sphere for N(0, I) (slerp), on a straight line for a fitted mixture (its mass is not spherical)."""
    rng, prior, d = torch.Generator().manual_seed(seed), prior_tensors(generator), generator.latent_dim
    a, b = (draw_latents(generator, rows, rng, prior).view(rows, 1, d) for _ in range(2))
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    path = torch.lerp(a, b, t) if prior else slerp(a, b, t)
    return path.reshape(rows * steps, d)
