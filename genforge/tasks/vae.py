"""Variational autoencoder trained on the ELBO: reconstruction + beta * KL (beta-VAE when beta != 1); with
`model.latent_prior: gmm` the exported decoder carries a mixture fitted to the encoder's posteriors of
the training images, refitted whenever the export module is asked for after new steps (checkpoints, grids,
FID)."""

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from genforge.engine.callbacks import Callback
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


class _PriorData(Callback):
    """Hands the training batches' images (uint8, on the device) to the task, which fits the prior on them."""

    def __init__(self, batches):
        self.batches = batches

    def on_start(self, step, task, logger):
        task.prior_data = (self.batches.images, self.batches.labels if task.num_classes else None)


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
        self.seed, self.steps_done, self.prior_draws = cfg.seed, 0, cfg.model.prior_draws
        self.prior_data, self._prior_fitted_at = None, None

    @classmethod
    def setup(cls, cfg, dist):
        batches, callbacks, class_names = super().setup(cfg, dist)
        if cfg.model.latent_prior == "normal":
            return batches, callbacks, class_names
        return batches, lambda out: [_PriorData(batches), *callbacks(out)], class_names

    def _elbo_terms(self, batch: dict, x: torch.Tensor):
        labels = (batch["label"],) if self.num_classes else ()
        recon, mu, logvar = self.networks["vae"](x, *labels)
        return reconstruction(self.cfg.reconstruction, recon, x), gaussian_kl(mu, logvar)

    def training_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        rec, kl = self._elbo_terms(batch, self.augment(batch["image"]))
        loss = rec + self.cfg.beta * kl
        self.steps_done += 1
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

    def export_module(self) -> nn.Module:
        decoder = super().export_module()
        if self.prior_data is not None and self._prior_fitted_at != self.steps_done:
            z = self.networks["vae"].prior_sample(*self.prior_data, draws=self.prior_draws, seed=self.seed)
            decoder.fit_prior(z, seed=self.seed)
            self._prior_fitted_at = self.steps_done
        return decoder
