"""Variational autoencoder trained on the ELBO: reconstruction + beta * KL (beta-VAE when beta != 1)."""

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from genforge.engine.ema import EMA
from genforge.losses import gaussian_kl, reconstruction
from genforge.models.vae import VAE
from genforge.registry import register_task
from genforge.schema import Optim, Strict
from genforge.tasks.base import make_optimizer, make_scheduler
from genforge.tasks.generative import TINY_GENERATION, GenerativeTask


class VAETaskConfig(Strict):
    kind: Literal["vae"] = "vae"
    beta: float = Field(1.0, ge=0.0, description="Weight of the KL term (beta-VAE).")
    reconstruction: Literal["bce", "mse", "l1"] = "bce"
    optim: Optim = Optim(learning_rate=1e-3, betas=(0.9, 0.999))
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)


@register_task("vae", VAETaskConfig, models=("vae",), family="generation", tiny=TINY_GENERATION)
class VAETask(GenerativeTask):
    def __init__(self, cfg, device: torch.device):
        super().__init__(cfg, device)
        self.cfg = cfg.task
        vae = VAE(cfg.model).to(device)
        self.networks = {"vae": vae}
        self.optimizers = {"vae": make_optimizer(self.cfg.optim, vae.parameters())}
        self.schedulers = {"vae": make_scheduler(self.optimizers["vae"], self.cfg.optim, cfg.train.steps)}
        self.ema = EMA(vae.decoder, self.cfg.ema_decay) if self.cfg.ema_decay > 0 else None

    def _elbo_terms(self, batch: dict, x: torch.Tensor):
        labels = (batch["label"],) if self.num_classes else ()
        recon, mu, logvar = self.networks["vae"](x, *labels)
        return reconstruction(self.cfg.reconstruction, recon, x), gaussian_kl(mu, logvar)

    def training_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        rec, kl = self._elbo_terms(batch, self.augment(batch["image"]))
        loss = rec + self.cfg.beta * kl
        if self.optimize("vae", loss) and self.ema is not None:
            self.ema.update(self.networks["vae"].decoder)
        return {"loss": loss.detach(), "reconstruction": rec.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, float]:
        self.networks["vae"].eval()
        rec, kl = self._elbo_terms(batch, batch["image"])
        return {"neg_elbo": float(rec + kl), "reconstruction": float(rec), "kl": float(kl)}

    def trained_network(self) -> nn.Module:
        return self.networks["vae"].decoder
