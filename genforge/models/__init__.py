"""Model families, registered explicitly by name (no discovery by file name).

`build_generator` rebuilds the network that deployment receives from a model config alone."""

import torch
from torch import nn

from genforge.models.dcgan import DCGANConfig, Discriminator, Generator
from genforge.models.isrnet import ISRNet, ISRNetConfig
from genforge.models.lapsrn import LapSRN, LapSRNConfig
from genforge.models.pair import GeneratorPair
from genforge.models.resnet_gen import ResNetGenConfig, ResNetGenerator
from genforge.models.spade import SPADEConfig, SPADEModel
from genforge.models.unet import UNetConfig, UNetGenerator
from genforge.models.vae import VAE, VAEConfig

ModelConfig = (DCGANConfig | VAEConfig | ISRNetConfig | LapSRNConfig | UNetConfig | ResNetGenConfig
               | SPADEConfig)

# the network deployment receives, by model name: a generator (z [+ labels] -> images) or an
# image-to-image network
EXPORT_NETWORKS = {"dcgan": Generator, "vae": Generator, "isrnet": ISRNet, "lapsrn": LapSRN,
                   "unet": UNetGenerator, "resnet": ResNetGenerator, "spade": SPADEModel}
SR_NETWORKS = {"isrnet": ISRNet, "lapsrn": LapSRN}
TRANSLATION_NETWORKS = {"unet": UNetGenerator, "resnet": ResNetGenerator, "spade": SPADEModel}


def build_export_network(cfg: ModelConfig, task_kind: str | None = None) -> nn.Module:
    """The deployed network; CycleGAN's is the pair of generators (A -> B and B -> A)."""
    if task_kind == "cyclegan":
        return build_generator_pair(cfg)
    return EXPORT_NETWORKS[cfg.name](cfg)


def build_translation_network(cfg: ModelConfig) -> nn.Module:
    return TRANSLATION_NETWORKS[cfg.name](cfg)


def build_generator_pair(cfg: ModelConfig) -> GeneratorPair:
    """A -> B as configured, and B -> A with the channel counts swapped."""
    back = cfg.model_copy(update={"in_channels": cfg.out_channels, "out_channels": cfg.in_channels})
    return GeneratorPair(build_translation_network(cfg), build_translation_network(back))


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
           "build_export_network", "sample_latent", "UNetConfig", "UNetGenerator", "ResNetGenConfig",
           "ResNetGenerator", "SPADEConfig", "SPADEModel", "GeneratorPair", "build_translation_network",
           "build_generator_pair"]
