"""Model families, registered explicitly by name (no discovery by file name).

`build_generator` rebuilds the network that deployment receives from a model config alone."""

import torch
from torch import nn

from genforge.models.dcgan import DCGANConfig, Discriminator, Generator
from genforge.models.vae import VAE, VAEConfig

ModelConfig = DCGANConfig | VAEConfig


def build_generator(cfg: ModelConfig) -> nn.Module:
    """The sampling network of a generation model: z [+ labels] -> images."""
    builders = {"dcgan": Generator, "vae": Generator}
    return builders[cfg.name](cfg)


def sample_latent(generator: nn.Module, n: int, *, generator_rng: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.randn(n, generator.latent_dim, generator=generator_rng, device=device)


__all__ = ["DCGANConfig", "VAEConfig", "ModelConfig", "Generator", "Discriminator", "VAE",
           "build_generator", "sample_latent"]
