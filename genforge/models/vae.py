"""Convolutional VAE (Kingma & Welling 2014) with optional class conditioning.

The encoder is the DCGAN discriminator body and the decoder is the DCGAN generator, so the
VAE and the GANs are compared on the same architecture."""

from typing import Literal

import torch
from torch import nn

from genforge.models.dcgan import ConvNetConfig, Discriminator, Generator
from genforge.registry import register_model


class VAEConfig(ConvNetConfig):
    name: Literal["vae"] = "vae"
    g_norm: Literal["batch", "instance", "spectral", "none"] = "batch"
    d_norm: Literal["batch", "instance", "spectral", "none"] = "batch"


class Encoder(nn.Module):
    """images [+ labels] -> (mu, logvar) of q(z | x, y)."""

    def __init__(self, cfg: ConvNetConfig):
        super().__init__()
        self.body = Discriminator(cfg.model_copy(update={"num_classes": 0}))
        del self.body.head
        self.embed = nn.Embedding(cfg.num_classes, 64) if cfg.num_classes else None
        extra = 64 if self.embed is not None else 0
        self.to_stats = nn.Linear(self.body.num_features + extra, 2 * cfg.latent_dim)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        h = self.body.features(x)
        if self.embed is not None:
            h = torch.cat([h, self.embed(labels)], dim=1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Generator(cfg)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        mu, logvar = self.encoder(x, labels)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decoder(z, labels), mu, logvar


# deployment receives the decoder: a generator z [+ labels] -> images like DCGAN's
register_model("vae", VAEConfig, tiny={"width": 8})(Generator)
