"""Super-resolution: stage 1 trains with a pixel loss (L1 / Charbonnier, multi-scale for LapSRN);
stage 2 fine-tunes adversarially against real HR patches with pixel + adversarial + feature-matching
losses, by default updating only the decoder while the encoder stays frozen."""

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from genforge import registry
from genforge.data import holdout_split, read_images
from genforge.data.degrade import Degradation, imresize
from genforge.data.patches import SRPatches, read_sr_pairs, validation_pairs
from genforge.engine.callbacks import Validation
from genforge.engine.ema import EMA
from genforge.errors import ConfigError
from genforge.losses import charbonnier, d_loss, feature_matching, g_loss
from genforge.metrics.psnr_ssim import batch_psnr
from genforge.models.sr_discriminator import SRDiscriminator, SRDiscriminatorConfig
from genforge.schema import Optim, Strict
from genforge.tasks.base import Task, evaluating, make_optimizer, make_scheduler


class DegradationConfig(Strict):
    """Real-world degradation for LR inputs: blur -> bicubic downscale -> noise -> JPEG."""

    blur_sigma: tuple[float, float] = Field((0.2, 2.0), description="Gaussian blur sigma range (HR pixels).")
    noise_sigma: tuple[float, float] = Field((0.0, 0.04), description="Gaussian noise sigma range ([0,1] units).")
    jpeg_quality: tuple[int, int] = Field((40, 95), description="JPEG quality range.")
    blur_prob: float = Field(0.5, ge=0.0, le=1.0)
    noise_prob: float = Field(0.5, ge=0.0, le=1.0)
    jpeg_prob: float = Field(0.5, ge=0.0, le=1.0)


class SRTaskConfig(Strict):
    kind: Literal["superres"] = "superres"
    stage: Literal["pixel", "gan"] = Field("pixel", description="pixel: stage 1; gan: adversarial fine-tuning.")
    pixel_loss: Literal["l1", "charbonnier", "mse"] = "l1"
    pixel_weight: float = Field(1.0, ge=0.0)
    patch_size: int = Field(96, ge=8, le=1024, description="HR patch side; a multiple of the scale.")
    scale_jitter: list[float] = Field([1.0], description="HR images are also used downscaled by these factors.")
    flips: bool = True
    rot90: bool = True
    degradation: DegradationConfig | None = Field(None, description="None: clean bicubic LR (benchmarks).")
    optim: Optim = Optim(learning_rate=1e-3, betas=(0.9, 0.999), schedule="cosine")
    adv_loss: Literal["bce", "hinge", "lsgan"] = "bce"
    adv_weight: float = Field(5e-3, ge=0.0)
    feature_matching_weight: float = Field(0.1, ge=0.0, description="L1 between D features of SR and HR.")
    finetune: Literal["decoder", "full"] = Field("decoder", description="stage gan: what the generator trains.")
    d_optim: Optim = Optim(learning_rate=1e-4, betas=(0.9, 0.999))
    discriminator: SRDiscriminatorConfig = SRDiscriminatorConfig()
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    val_images: int = Field(8, ge=0, description="Holdout patches for validation PSNR every train.eval_every.")



def pixel_loss(kind: str, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    if kind == "charbonnier":
        return charbonnier(sr, hr)
    if kind == "mse":
        return ((sr - hr) ** 2).mean()
    return (sr - hr).abs().mean()


@registry.register_task("superres", SRTaskConfig, models=("isrnet", "lapsrn", "repsr"), family="super-resolution",
                        tiny={"data": {"dataset": "photos"}, "model": {"channels": 1},
                              "task": {"patch_size": 16, "val_images": 1}, "train": {"batch_size": 2}})
class SuperResTask(Task):
    def __init__(self, cfg, device: torch.device):
        super().__init__(device)
        self.cfg = cfg.task
        net = registry.model_row(cfg.model.name).build(cfg.model).to(device)
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

    @classmethod
    def setup(cls, cfg, dist):
        """Random HR patches with on-the-fly LR, and validation PSNR on holdout crops."""
        t, scale = cfg.task, cfg.model.scale
        if t.patch_size % scale:
            raise ConfigError(f"config error: task.patch_size: {t.patch_size} is not a multiple of the scale {scale}")
        lr_images = None
        if cfg.data.lr_folder:
            if not cfg.data.dataset.startswith("folder:"):
                raise ConfigError("config error: data.lr_folder: pairs need data.dataset: folder:HR_PATH")
            images, lr_images = read_sr_pairs(cfg.data.dataset[len("folder:"):], cfg.data.lr_folder, scale)
        else:
            images, _, _ = read_images(cfg.data.dataset, split=cfg.data.split)
        degradation = Degradation(scale, **t.degradation.model_dump()) if t.degradation else None
        batches = SRPatches(images, scale=scale, patch_size=t.patch_size, batch_size=cfg.train.batch_size,
                            seed=cfg.seed, channels=cfg.model.channels, scale_jitter=t.scale_jitter, flips=t.flips,
                            rot90=t.rot90, degradation=degradation, brightness=cfg.data.augment.brightness,
                            contrast=cfg.data.augment.contrast, noise=cfg.data.augment.noise,
                            lr_images=lr_images, device=dist.device, rank=dist.rank)
        val = []
        holdout_name = holdout_split(cfg.data.dataset)
        if t.val_images and dist.is_main and holdout_name and holdout_name != cfg.data.split:
            holdout, _, _ = read_images(cfg.data.dataset, split=holdout_name)
            val = validation_pairs(holdout, scale=scale, size=t.patch_size * 2, count=t.val_images,
                                   channels=cfg.model.channels, device=dist.device)

        def callbacks(out: Path):
            return [Validation(val, cfg.train.eval_every or cfg.train.checkpoint_every)] if val else []
        return batches, callbacks, []

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
        with evaluating(self.export_module()) as net:
            sr = net(batch["lr"])
        return {"psnr": float(batch_psnr(sr, batch["hr"], shave=self.networks["g"].scale))}

    def trained_network(self) -> nn.Module:
        return self.networks["g"]
