"""Super-resolution: stage 1 trains with a pixel loss (L1 / Charbonnier, multi-scale for LapSRN);
stage 2 fine-tunes adversarially against real HR patches with pixel + adversarial + feature-matching
losses, by default updating only the decoder while the encoder stays frozen."""

import torch
from torch import nn

from genforge.data.degrade import imresize
from genforge.engine.ema import EMA
from genforge.losses import charbonnier, d_loss, feature_matching, g_loss
from genforge.models import build_sr_network
from genforge.models.sr_discriminator import SRDiscriminator
from genforge.tasks.base import Task, make_optimizer, make_scheduler


def pixel_loss(kind: str, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    if kind == "charbonnier":
        return charbonnier(sr, hr)
    if kind == "mse":
        return ((sr - hr) ** 2).mean()
    return (sr - hr).abs().mean()


def psnr_batch(sr: torch.Tensor, hr: torch.Tensor, shave: int) -> torch.Tensor:
    """Mean RGB PSNR of 8-bit-quantised outputs, borders shaved: a cheap validation signal."""
    sr = (sr.clamp(0, 1) * 255).round()
    hr = hr * 255
    if shave:
        sr, hr = sr[..., shave:-shave, shave:-shave], hr[..., shave:-shave, shave:-shave]
    mse = ((sr - hr) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return (10 * torch.log10(255.0 ** 2 / mse)).mean()


class SuperResTask(Task):
    def __init__(self, cfg, device: torch.device):
        super().__init__(device)
        self.cfg = cfg.task
        net = build_sr_network(cfg.model).to(device)
        self.networks = {"g": net}
        self.adversarial = self.cfg.stage == "gan"
        if self.adversarial and self.cfg.finetune == "decoder" and hasattr(net, "decoder_parameters"):
            params = list(net.decoder_parameters())
            frozen = {id(p) for p in params}
            for p in net.parameters():
                p.requires_grad_(id(p) in frozen)
        else:
            params = list(net.parameters())
        self.optimizers = {"g": make_optimizer(self.cfg.optim, params)}
        self.schedulers = {"g": make_scheduler(self.optimizers["g"], self.cfg.optim, cfg.train.steps)}
        if self.adversarial:
            D = SRDiscriminator(self.cfg.discriminator, channels=cfg.model.channels).to(device)
            self.networks["d"] = D
            self.optimizers["d"] = make_optimizer(self.cfg.d_optim, D.parameters())
            self.schedulers["d"] = make_scheduler(self.optimizers["d"], self.cfg.d_optim, cfg.train.steps)
        self.ema = EMA(net, self.cfg.ema_decay) if self.cfg.ema_decay > 0 else None

    def _pixel(self, net, lr, hr):
        if self.cfg.pixel_loss == "charbonnier" and hasattr(net, "forward_pyramid"):
            outs = net.forward_pyramid(lr)  # LapSRN: supervise every pyramid level
            # intermediate levels are supervised by the same bicubic that makes the LR inputs
            targets = [imresize(hr, size=tuple(o.shape[-2:])) if o.shape[-1] != hr.shape[-1] else hr for o in outs]
            return outs[-1], sum(charbonnier(o, t) for o, t in zip(outs, targets))
        sr = net(lr)
        return sr, pixel_loss(self.cfg.pixel_loss, sr, hr)

    def training_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        G = self.networks["g"]
        lr, hr = batch["lr"], batch["hr"]
        metrics = {}
        if self.adversarial:
            D = self.networks["d"]
            with torch.no_grad():
                fake = G(lr)
            loss_d = d_loss(self.cfg.adv_loss, D(hr), D(fake))
            self.optimize("d", loss_d)
            metrics["loss_d"] = loss_d.detach()
        sr, loss_pix = self._pixel(G, lr, hr)
        loss = self.cfg.pixel_weight * loss_pix
        if self.adversarial:
            D.requires_grad_(False)
            fake_score, fake_feats = D(sr, return_features=True)
            loss_adv = g_loss(self.cfg.adv_loss, fake_score)
            loss = loss + self.cfg.adv_weight * loss_adv
            metrics["loss_adv"] = loss_adv.detach()
            if self.cfg.feature_matching_weight > 0:
                with torch.no_grad():
                    _, real_feats = D(hr, return_features=True)
                fm = feature_matching(fake_feats, real_feats)
                loss = loss + self.cfg.feature_matching_weight * fm
                metrics["loss_fm"] = fm.detach()
            D.requires_grad_(True)
        if self.optimize("g", loss) and self.ema is not None:
            self.ema.update(G)
        metrics["loss_pixel"] = loss_pix.detach()
        metrics["loss"] = loss.detach()
        return metrics

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, float]:
        net = self.export_module()
        was = net.training
        net.eval()
        sr = net(batch["lr"])
        net.train(was)
        return {"psnr": float(psnr_batch(sr, batch["hr"], self.networks["g"].scale))}

    def export_module(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.networks["g"]
