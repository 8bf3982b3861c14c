"""CycleGAN (Zhu et al. 2017): unpaired translation with two generators, two discriminators, cycle
consistency, an identity loss and pools of past fakes."""

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from genforge.errors import ConfigError
from genforge.losses import multiscale_d_loss, multiscale_g_loss
from genforge.models.pair import build_generator_pair
from genforge.models.patchgan import MultiScaleDiscriminator, PatchGANConfig
from genforge.registry import register_task
from genforge.schema import Optim
from genforge.tasks.translation import TINY_TRANSLATION, TranslationTask, TranslationTaskConfig


class CycleGANTaskConfig(TranslationTaskConfig):
    kind: Literal["cyclegan"] = "cyclegan"
    gan_loss: Literal["bce", "lsgan", "hinge"] = "lsgan"
    cycle_weight: float = Field(10.0, ge=0.0, description="A -> B -> A and B -> A -> B reconstruction (L1).")
    cycle_a_weight: float | None = Field(
        None, ge=0.0, description="A -> B -> A's weight where it differs from cycle_weight. A many-to-one A -> B "
        "(posterising: many photos give one poster) cannot be inverted, so this cycle pulls G towards keeping "
        "the input's detail; lower it (0: off) and hold G to its input with input_weight instead.")
    input_weight: float = Field(0.0, ge=0.0, description="L1 of each generator's output to its own input "
                                "(G(a) to a, F(b) to b): the nearest translation wins, for mappings that keep "
                                "colours and layout (a fidelity term; 0 = off).")
    identity_weight: float = Field(0.5, ge=0.0, description="Identity loss, relative to cycle_weight; "
                                                            "needs equal channels in A and B.")
    pool_size: int = Field(50, ge=0, description="Image pool of past fakes shown to D (0 = off).")
    discriminator: PatchGANConfig = PatchGANConfig()
    g_optim: Optim = Optim(schedule="linear", decay_start=0.5)
    d_optim: Optim = Optim(schedule="linear", decay_start=0.5)


class ImagePool:
    """Shrivastava et al.'s history of generated images (CycleGAN, pool of 50): D sees, for each
    new fake, with probability 1/2 an older one in its place, which damps oscillation. The stored
    images are part of the checkpoint so a resumed run continues exactly."""

    def __init__(self, size: int):
        self.size = size
        self.images: torch.Tensor | None = None

    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return fakes
        out = []
        for img in fakes.detach():
            img = img[None]
            n = 0 if self.images is None else len(self.images)
            if n < self.size:
                self.images = img.clone() if self.images is None else torch.cat([self.images, img])
                out.append(img)
            elif torch.rand(()) < 0.5:
                i = int(torch.randint(0, n, ()))
                out.append(self.images[i:i + 1].clone())
                self.images[i] = img[0]
            else:
                out.append(img)
        return torch.cat(out)

    def state_dict(self) -> dict:
        return {"images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.images = state["images"]


@register_task("cyclegan", CycleGANTaskConfig, models=("resnet", "unet"), family="translation",
               export=build_generator_pair, tiny={**TINY_TRANSLATION, "data": {"dataset": "photo2poster"}})
class CycleGANTask(TranslationTask):
    """Zhu et al. 2017: G: A -> B and F: B -> A with one discriminator per domain (LSGAN),
    cycle consistency (weight 10), identity loss (0.5 x cycle weight) and image pools of 50."""

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        pair = build_generator_pair(cfg.model).to(device)
        self.pair = pair
        d_cfg = self.cfg.discriminator
        self.networks = {"g_ab": pair.a2b, "g_ba": pair.b2a,
                         "d_a": MultiScaleDiscriminator(pair.in_channels, d_cfg).to(device),
                         "d_b": MultiScaleDiscriminator(pair.out_channels, d_cfg).to(device)}
        self.identity = self.cfg.identity_weight > 0 and pair.in_channels == pair.out_channels
        if self.cfg.input_weight > 0 and pair.in_channels != pair.out_channels:
            raise ConfigError(f"config error: task.input_weight: needs equal channels in A and B (model has "
                              f"{pair.in_channels} and {pair.out_channels})")
        g_params = [*pair.a2b.parameters(), *pair.b2a.parameters()]
        d_params = [*self.networks["d_a"].parameters(), *self.networks["d_b"].parameters()]
        self._optimizers(cfg, g_params, d_params)
        self.pools = {"a": ImagePool(self.cfg.pool_size), "b": ImagePool(self.cfg.pool_size)}

    def training_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        G, F = self.networks["g_ab"], self.networks["g_ba"]
        D_a, D_b = self.networks["d_a"], self.networks["d_b"]
        real_a, real_b = batch["a"], batch["b"]
        kind, t = self.cfg.gan_loss, self.cfg

        fake_b, fake_a = G(self.noisy(real_a)), F(self.noisy(real_b))
        for D in (D_a, D_b):
            D.requires_grad_(False)
        loss_gan = multiscale_g_loss(kind, D_b(fake_b)) + multiscale_g_loss(kind, D_a(fake_a))
        for D in (D_a, D_b):
            D.requires_grad_(True)
        loss_cycle = (G(fake_a) - real_b).abs().mean()
        loss_g = loss_gan + t.cycle_weight * loss_cycle
        cycle_a_weight = t.cycle_weight if t.cycle_a_weight is None else t.cycle_a_weight
        if cycle_a_weight > 0:  # off (the preset): no F pass through G's output at all, not a zero-weighted one
            cycle_a = (F(fake_b) - real_a).abs().mean()
            loss_g, loss_cycle = loss_g + cycle_a_weight * cycle_a, loss_cycle + cycle_a
        metrics = {"loss_gan": loss_gan.detach(), "loss_cycle": loss_cycle.detach()}
        if t.input_weight > 0:
            loss_input = (fake_b - real_a).abs().mean() + (fake_a - real_b).abs().mean()
            loss_g = loss_g + t.input_weight * loss_input
            metrics["loss_input"] = loss_input.detach()
        if self.identity:
            loss_idt = (G(self.noisy(real_b)) - real_b).abs().mean() + (F(self.noisy(real_a)) - real_a).abs().mean()
            loss_g = loss_g + t.cycle_weight * t.identity_weight * loss_idt
            metrics["loss_idt"] = loss_idt.detach()
        self.optimize("g", loss_g, self.cfg.grad_clip)

        pooled_b, pooled_a = self.pools["b"].query(fake_b), self.pools["a"].query(fake_a)
        loss_d = 0.5 * (multiscale_d_loss(kind, D_b(real_b), D_b(pooled_b))
                        + multiscale_d_loss(kind, D_a(real_a), D_a(pooled_a)))
        self.optimize("d", loss_d, self.cfg.grad_clip)
        metrics.update(loss_g=loss_g.detach(), loss_d=loss_d.detach())
        return metrics

    data_kinds = ("unpaired", "paired")

    def trained_network(self) -> nn.Module:
        return self.pair

    def state_dict(self) -> dict:
        return {**super().state_dict(), "pools": {k: p.state_dict() for k, p in self.pools.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for k, p in self.pools.items():
            p.load_state_dict(state.get("pools", {}).get(k, {"images": None}))
            if p.images is not None:  # checkpoints are read on the CPU
                p.images = p.images.to(self.device)


