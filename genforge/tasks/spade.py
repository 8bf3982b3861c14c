"""SPADE (Park et al. 2019): photos from semantic label maps, with an optional style encoder."""

from typing import Literal

import torch
from pydantic import Field

from genforge import registry
from genforge.errors import ConfigError
from genforge.losses import gaussian_kl, multiscale_d_loss, multiscale_feature_matching, multiscale_g_loss
from genforge.models.patchgan import MultiScaleDiscriminator, PatchGANConfig
from genforge.models.spade import one_hot_labels
from genforge.schema import Optim
from genforge.tasks.translation import TINY_TRANSLATION, TranslationTask, TranslationTaskConfig


class SPADETaskConfig(TranslationTaskConfig):
    kind: Literal["spade"] = "spade"
    gan_loss: Literal["hinge", "lsgan", "bce"] = "hinge"
    feature_matching_weight: float = Field(10.0, ge=0.0, description="L1 between D features of fake and real.")
    kl_weight: float = Field(0.05, ge=0.0, description="KL of the style encoder (model.use_style).")
    l1_weight: float = Field(0.0, ge=0.0, description="Optional L1 to the photo (there is no VGG loss: "
                                                      "no weights can be downloaded).")
    discriminator: PatchGANConfig = PatchGANConfig(norm="spectral", n_layers=4, num_scales=2)
    g_optim: Optim = Optim(learning_rate=1e-4, betas=(0.0, 0.9))
    d_optim: Optim = Optim(learning_rate=4e-4, betas=(0.0, 0.9))  # two time-scale update rule


@registry.register_task("spade", SPADETaskConfig, models=("spade",), family="translation",
                        tiny={**TINY_TRANSLATION, "data": {"dataset": "labels2photos"}, "model": {"label_nc": 8},
                              "task": {**TINY_TRANSLATION["task"], "patch_size": 32,
                                       "discriminator": {"width": 8, "n_layers": 2, "num_scales": 2}}})
class SPADETask(TranslationTask):
    """Park et al. 2019: a generator whose normalisation is modulated by the label map, multi-scale
    PatchGAN discriminators on (map, image), hinge loss, feature matching, two time-scale learning
    rates, and optionally a style encoder trained as a VAE (KL to N(0, 1)) for multi-modal output."""

    input_key = "label"
    data_kinds = ("semantic",)

    @classmethod
    def check_data(cls, cfg, data) -> None:
        m = cfg.model
        if data.label_nc != m.label_nc:
            raise ConfigError(f"config error: model.label_nc: is {m.label_nc} but dataset "
                              f"{cfg.data.dataset!r} has {data.label_nc} classes")
        if m.out_channels != data.b_channels:
            raise ConfigError(f"config error: model.out_channels: is {m.out_channels} but dataset "
                              f"{cfg.data.dataset!r} has {data.b_channels}-channel B images")
        if m.use_style and cfg.task.patch_size < 32:
            raise ConfigError(f"config error: task.patch_size: {cfg.task.patch_size} is too small for the "
                              "style encoder (model.use_style needs at least 32)")

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        G = registry.model_row(cfg.model.name).build(cfg.model).to(device)
        self.label_nc = cfg.model.label_nc
        D = MultiScaleDiscriminator(self.label_nc + G.out_channels, self.cfg.discriminator).to(device)
        self.networks = {"g": G, "d": D}
        self._optimizers(cfg, G.parameters(), D.parameters())

    def generator_input(self, batch: dict) -> torch.Tensor:
        return one_hot_labels(batch["label"], self.label_nc, check=False)  # checked when read

    def training_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        G, D = self.networks["g"], self.networks["d"]
        label_map, real = self.generator_input(batch), batch["b"]
        t, metrics = self.cfg, {}
        z, loss_kl = None, None
        if G.use_style:
            mu, logvar = G.encode(real)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            loss_kl = gaussian_kl(mu, logvar)
        fake = G(label_map, z)

        loss_d = multiscale_d_loss(t.gan_loss, D(torch.cat([label_map, real], 1)),
                                   D(torch.cat([label_map, fake.detach()], 1)))
        self.optimize("d", loss_d, self.cfg.grad_clip)

        D.requires_grad_(False)
        fake_out = D(torch.cat([label_map, fake], 1))
        loss_gan = multiscale_g_loss(t.gan_loss, fake_out)
        loss_g = loss_gan
        if t.feature_matching_weight > 0:
            with torch.no_grad():
                real_out = D(torch.cat([label_map, real], 1))
            loss_fm = multiscale_feature_matching(fake_out, real_out)
            loss_g = loss_g + t.feature_matching_weight * loss_fm
            metrics["loss_fm"] = loss_fm.detach()
        D.requires_grad_(True)
        if loss_kl is not None:
            loss_g = loss_g + t.kl_weight * loss_kl
            metrics["loss_kl"] = loss_kl.detach()
        if t.l1_weight > 0:
            loss_l1 = (fake - real).abs().mean()
            loss_g = loss_g + t.l1_weight * loss_l1
            metrics["loss_l1"] = loss_l1.detach()
        self.optimize("g", loss_g, self.cfg.grad_clip)
        metrics.update(loss_d=loss_d.detach(), loss_gan=loss_gan.detach(), loss_g=loss_g.detach())
        return metrics
