"""Adversarial training of a generator against a discriminator: GAN (BCE), WGAN (weight
clipping), WGAN-GP, hinge and least squares, unconditional or class-conditional.

One training step is one discriminator update; the generator is updated every n_critic steps.
With diff_augment the augmentation sits in front of D for real and generated images alike, so its
gradients reach G through it (DiffAugment); without it only the reals are augmented."""

from typing import Literal

import torch
from pydantic import Field

from genforge.losses import clip_weights, d_loss, g_loss, gradient_penalty
from genforge.models.dcgan import Discriminator, Generator
from genforge.registry import register_task
from genforge.schema import Optim, Strict
from genforge.tasks.generative import TINY_GENERATION, AdversarialGenerator, GenerativeTask


class GANTaskConfig(Strict):
    kind: Literal["gan"] = "gan"
    loss: Literal["bce", "wgan", "wgan-gp", "hinge", "lsgan"] = "bce"
    n_critic: int = Field(1, ge=1, le=20, description="Discriminator steps per generator step.")
    clip: float = Field(0.01, gt=0.0, description="Weight clipping limit (loss: wgan).")
    gp_weight: float = Field(10.0, ge=0.0, description="Gradient penalty lambda (loss: wgan-gp).")
    g_optim: Optim = Optim()
    d_optim: Optim = Optim()
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="EMA of generator weights; 0 = off.")
    diff_augment: bool = Field(False, description="Apply data.augment to real and generated images alike on "
                               "their way into D, differentiably (DiffAugment, Zhao et al. 2020): D sees more "
                               "varied images while G still learns the un-augmented data. Off: reals only.")
    mode_seeking_weight: float = Field(0.0, ge=0.0, le=100.0, description=(
        "Mode-seeking term (MSGAN, Mao et al. 2019) in the generator step: two codes per label, and the "
        "generator is penalised by weight / (mean |G(z1) - G(z2)| / mean |z1 - z2|), so that different codes "
        "give different images. The remedy for a conditional generator that ignores z within a class "
        "(recall near 0); 0 = off."))


@register_task("gan", GANTaskConfig, models=("dcgan",), family="generation",
               tiny={**TINY_GENERATION, "task": {"loss": "bce", "ema_decay": 0.9}})
class GANTask(AdversarialGenerator, GenerativeTask):
    def __init__(self, cfg, device: torch.device):
        super().__init__(cfg, device)
        self.cfg = cfg.task
        self.conditional = cfg.model.num_classes > 0
        G = Generator(cfg.model).to(device)
        D = Discriminator(cfg.model).to(device)
        self.networks = {"g": G, "d": D}
        self.init_optimizers(G, D.parameters(), cfg.train.steps)

    def training_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        G, D = self.networks["g"], self.networks["d"]
        kind = self.cfg.loss
        real = self.augment(batch["image"])
        # DiffAugment: the fakes go through the same random augmentation (differentiable) as the reals
        seen = self.augment if self.cfg.diff_augment else (lambda x: x)
        labels = batch.get("label") if self.conditional else None
        extra = (labels,) if labels is not None else ()
        z = torch.randn(real.shape[0], G.latent_dim, device=self.device)

        with torch.no_grad():
            fake = seen(G(z, *extra))
        d_real, d_fake = D(real, *extra), D(fake, *extra)
        loss_d = d_loss(kind, d_real, d_fake)
        metrics = {"d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()}
        if kind == "wgan-gp":
            scaler = self.scalers.get("d")
            gp = gradient_penalty(D, real, fake, *extra, scale=scaler.scale if scaler is not None else None)
            loss_d = loss_d + self.cfg.gp_weight * gp
            metrics["gp"] = gp.detach()
        metrics["loss_d"] = loss_d.detach()
        self.optimize("d", loss_d)
        if kind == "wgan":
            clip_weights(D, self.cfg.clip)

        if (step + 1) % self.cfg.n_critic == 0:
            D.requires_grad_(False)  # no gradients for D's weights during the G step
            n = real.shape[0]
            pairs = self.cfg.mode_seeking_weight > 0
            z = torch.randn(2 * n if pairs else n, G.latent_dim, device=self.device)
            g_extra = tuple(torch.cat([e, e]) for e in extra) if pairs else extra
            fake = G(z, *g_extra)
            loss_g = g_loss(kind, D(seen(fake), *g_extra))
            D.requires_grad_(True)
            if pairs:  # the same labels twice: the image distance per unit of code distance, per pair
                ratio = ((fake[:n] - fake[n:]).abs().flatten(1).mean(1) / (z[:n] - z[n:]).abs().mean(1)).mean()
                loss_g = loss_g + self.cfg.mode_seeking_weight / (ratio + 1e-5)
                metrics["ms_ratio"] = ratio.detach()
            if self.optimize("g", loss_g) and self.ema is not None:
                self.ema.update(G)
            metrics["loss_g"] = loss_g.detach()
        return metrics
