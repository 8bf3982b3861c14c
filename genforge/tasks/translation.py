"""Image-to-image translation: Pix2Pix (paired), CycleGAN (unpaired), SPADE (from semantic maps).

Batches hold images in [-1, 1]: {"a", "b"} for pairs and unpaired domains, {"label", "b"} for
semantic maps (int64 class ids, 255 = don't care). The three tasks share validation against a
known target and the preview rows (input | output | target)."""

import torch
from torch import nn

from genforge.data.grid import LABEL_PALETTE
from genforge.losses import (gaussian_kl, multiscale_d_loss, multiscale_feature_matching,
                             multiscale_g_loss)
from genforge.models import build_generator_pair, build_translation_network
from genforge.models.patchgan import MultiScaleDiscriminator
from genforge.models.spade import one_hot_labels
from genforge.tasks.base import Task, make_optimizer, make_scheduler

_PALETTE = torch.from_numpy(LABEL_PALETTE).float() / 127.5 - 1


def show(x: torch.Tensor, *, labels: bool = False) -> torch.Tensor:
    """A batch as 3-channel images in [-1, 1] for grids: grey repeated, class ids coloured."""
    if labels:
        return _PALETTE.to(x.device)[x.clamp(0, 255)].permute(0, 3, 1, 2)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]


def psnr_01(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """PSNR of 8-bit-quantised images given in [-1, 1] (RGB, no shave)."""
    fake = ((fake.clamp(-1, 1) + 1) * 127.5).round()
    real = ((real + 1) * 127.5).round()
    mse = ((fake - real) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return (10 * torch.log10(255.0 ** 2 / mse)).mean()


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


class TranslationTask(Task):
    """Shared parts: the generator that validation and deployment use, preview rows, validation."""

    input_key = "a"

    def __init__(self, cfg, device: torch.device):
        super().__init__(device)
        self.cfg = cfg.task

    def _optimizers(self, cfg, g_params, d_params) -> None:
        t = cfg.task
        self.optimizers = {"g": make_optimizer(t.g_optim, g_params)}
        self.schedulers = {"g": make_scheduler(self.optimizers["g"], t.g_optim, cfg.train.steps)}
        if d_params is not None:
            self.optimizers["d"] = make_optimizer(t.d_optim, d_params)
            self.schedulers["d"] = make_scheduler(self.optimizers["d"], t.d_optim, cfg.train.steps)

    def generator_input(self, batch: dict) -> torch.Tensor:
        return batch["a"]

    def noisy(self, x: torch.Tensor) -> torch.Tensor:
        """A training input to a generator, with task.input_noise added (images only, not label maps)."""
        return x + self.cfg.input_noise * torch.randn_like(x) if self.cfg.input_noise > 0 else x

    @torch.no_grad()
    def translate_batch(self, batch: dict) -> torch.Tensor:
        net = self.export_module()
        was = net.training
        net.eval()
        out = net(self.generator_input(batch))
        net.train(was)
        return out

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, float]:
        if "b" not in batch:
            return {}
        fake = self.translate_batch(batch)
        return {"l1": float((fake - batch["b"]).abs().mean() / 2),  # in [0, 1] units
                "psnr": float(psnr_01(fake, batch["b"]))}

    @torch.no_grad()
    def preview(self, batch: dict) -> torch.Tensor:
        """input | output [| target] for one holdout batch, as 3-channel images in [-1, 1]."""
        shown = show(batch[self.input_key], labels=self.input_key == "label")
        rows = [shown, show(self.translate_batch(batch))]
        if "b" in batch:
            rows.append(show(batch["b"]))
        return torch.stack(rows, 1).flatten(0, 1)


class Pix2PixTask(TranslationTask):
    """Isola et al. 2017: conditional GAN on (A, B) pairs with a PatchGAN on the concatenated pair,
    plus L1 to the target (weight 100). gan_loss none is the L1-only baseline."""

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        G = build_translation_network(cfg.model).to(device)
        self.networks = {"g": G}
        D = None
        if self.cfg.gan_loss != "none":
            D = MultiScaleDiscriminator(G.in_channels + G.out_channels, self.cfg.discriminator).to(device)
            self.networks["d"] = D
        self._optimizers(cfg, G.parameters(), D.parameters() if D is not None else None)

    def training_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        G = self.networks["g"]
        real_a, real_b = batch["a"], batch["b"]
        fake_b = G(self.noisy(real_a))
        metrics = {}
        loss_g = 0.0
        if "d" in self.networks:
            D, kind = self.networks["d"], self.cfg.gan_loss
            loss_d = multiscale_d_loss(kind, D(torch.cat([real_a, real_b], 1)),
                                       D(torch.cat([real_a, fake_b.detach()], 1)))
            self.optimize("d", loss_d, self.cfg.grad_clip)
            D.requires_grad_(False)
            loss_adv = multiscale_g_loss(kind, D(torch.cat([real_a, fake_b], 1)))
            D.requires_grad_(True)
            loss_g = loss_adv
            metrics.update(loss_d=loss_d.detach(), loss_adv=loss_adv.detach())
        loss_l1 = (fake_b - real_b).abs().mean()
        loss_g = loss_g + self.cfg.l1_weight * loss_l1
        self.optimize("g", loss_g, self.cfg.grad_clip)
        metrics.update(loss_l1=loss_l1.detach(), loss_g=loss_g.detach())
        return metrics

    def export_module(self) -> nn.Module:
        return self.networks["g"]


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
        loss_cycle = (F(fake_b) - real_a).abs().mean() + (G(fake_a) - real_b).abs().mean()
        loss_g = loss_gan + t.cycle_weight * loss_cycle
        metrics = {"loss_gan": loss_gan.detach(), "loss_cycle": loss_cycle.detach()}
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

    def export_module(self) -> nn.Module:
        return self.pair

    def state_dict(self) -> dict:
        return {**super().state_dict(), "pools": {k: p.state_dict() for k, p in self.pools.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for k, p in self.pools.items():
            p.load_state_dict(state.get("pools", {}).get(k, {"images": None}))


class SPADETask(TranslationTask):
    """Park et al. 2019: a generator whose normalisation is modulated by the label map, multi-scale
    PatchGAN discriminators on (map, image), hinge loss, feature matching, two time-scale learning
    rates, and optionally a style encoder trained as a VAE (KL to N(0, 1)) for multi-modal output."""

    input_key = "label"

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        G = build_translation_network(cfg.model).to(device)
        self.label_nc = cfg.model.label_nc
        D = MultiScaleDiscriminator(self.label_nc + G.out_channels, self.cfg.discriminator).to(device)
        self.networks = {"g": G, "d": D}
        self._optimizers(cfg, G.parameters(), D.parameters())

    def generator_input(self, batch: dict) -> torch.Tensor:
        return one_hot_labels(batch["label"], self.label_nc)

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

    def export_module(self) -> nn.Module:
        return self.networks["g"]
