"""Model families, registered explicitly by name (no discovery by file name).

`build_generator` rebuilds the network that deployment receives from a model config alone."""

import torch
from torch import nn

from genforge.models.dcgan import DCGANConfig, Discriminator, Generator
from genforge.models.isrnet import ISRNet, ISRNetConfig
from genforge.models.lapsrn import LapSRN, LapSRNConfig
from genforge.models.vae import VAE, VAEConfig

ModelConfig = DCGANConfig | VAEConfig | ISRNetConfig | LapSRNConfig

# the network deployment receives, by model name: a generator (z [+ labels] -> images) or an
# image-to-image network
EXPORT_NETWORKS = {"dcgan": Generator, "vae": Generator, "isrnet": ISRNet, "lapsrn": LapSRN}
SR_NETWORKS = {"isrnet": ISRNet, "lapsrn": LapSRN}


def build_export_network(cfg: ModelConfig) -> nn.Module:
    return EXPORT_NETWORKS[cfg.name](cfg)


def build_generator(cfg: ModelConfig) -> nn.Module:
    """The sampling network of a generation model: z [+ labels] -> images."""
    return {"dcgan": Generator, "vae": Generator}[cfg.name](cfg)


def build_sr_network(cfg: ModelConfig) -> nn.Module:
    return SR_NETWORKS[cfg.name](cfg)


def sample_latent(generator: nn.Module, n: int, *, generator_rng: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.randn(n, generator.latent_dim, generator=generator_rng, device=device)


__all__ = ["DCGANConfig", "VAEConfig", "ISRNetConfig", "LapSRNConfig", "ModelConfig", "Generator",
           "Discriminator", "VAE", "ISRNet", "LapSRN", "build_generator", "build_sr_network",
           "build_export_network", "sample_latent"]
