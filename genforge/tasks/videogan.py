"""Video generation: VideoGAN (models/videogan.py) against two critics, on moving digits or videos:PATH
(data/movingdigits.py).

One training step is one update of both discriminators (one optimizer over the image and the video
critic: their losses are independent, so this is two Adams in one); the generator is updated every
n_critic steps against both, the video term weighted by task.video_weight. The image critic sees
task.image_frames random frames of each clip (MoCoGAN samples one). Hinge loss by default; WGAN-GP
adds a gradient penalty to each critic. FID/KID during training is per frame, with the digits
features, against the fixed holdout clips' frames."""

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from genforge.data.movingdigits import NAME, PREFIX, ClipBatches, read_videos, reference_clips
from genforge.engine.callbacks import GenerationMetrics, SampleGrid
from genforge.errors import ConfigError, UserError
from genforge.losses import d_loss, g_loss, gradient_penalty
from genforge.models.sampling import standing_batchnorm
from genforge.models.videogan import (
    VideoDiscriminator,
    VideoGenerator,
    generate_clips,
    image_discriminator,
    sample_codes,
)
from genforge.registry import register_task
from genforge.schema import Optim, Strict
from genforge.tasks.base import Task
from genforge.tasks.generative import AdversarialGenerator


class VideoGANTaskConfig(Strict):
    kind: Literal["videogan"] = "videogan"
    loss: Literal["hinge", "wgan-gp", "bce", "lsgan"] = "hinge"
    n_critic: int = Field(1, ge=1, le=20, description="Discriminator steps per generator step.")
    gp_weight: float = Field(10.0, ge=0.0, description="Gradient penalty lambda, on each critic (loss: wgan-gp).")
    video_weight: float = Field(1.0, ge=0.0, description="Weight of the video critic's term in G's loss (the "
                                "image critic's is 1).")
    image_frames: int = Field(1, ge=1, le=128, description="Random frames of each clip the image critic sees.")
    digits: int = Field(1, ge=1, le=2, description="movingdigits: digits per clip (1 or 2).")
    digit_size: int = Field(16, ge=4, le=256, description="movingdigits: side of a digit, in pixels (8x8 digits "
                            "upscaled).")
    g_optim: Optim = Optim(learning_rate=2e-4, betas=(0.5, 0.999))
    d_optim: Optim = Optim(learning_rate=2e-4, betas=(0.5, 0.999))
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="EMA of the generator's weights; 0 = off.")


# the seconds-long training the shared tests run (registry tiny rows): 4 frames of 16x16, 8-pixel digits
TINY = {"data": {"dataset": NAME}, "model": {"image_size": 16, "frames": 4},
        "task": {"digit_size": 8, "ema_decay": 0.9}, "train": {"batch_size": 4, "features": "none"}}


@register_task("videogan", VideoGANTaskConfig, models=("videogan",), family="video-generation", tiny=TINY)
class VideoGANTask(AdversarialGenerator, Task):
    def __init__(self, cfg, device: torch.device):
        super().__init__(device)
        self.cfg = cfg.task
        self.num_classes = cfg.model.num_classes
        G = VideoGenerator(cfg.model).to(device)
        Di, Dv = image_discriminator(cfg.model).to(device), VideoDiscriminator(cfg.model).to(device)
        self.networks = {"g": G, "d_image": Di, "d_video": Dv}
        self.init_optimizers(G, [*Di.parameters(), *Dv.parameters()], cfg.train.steps)
        g = torch.Generator().manual_seed(cfg.seed + 12345)  # fixed codes: sample grids comparable over time
        self.grid_codes = [c.to(device) for c in sample_codes(G, 8, G.frames, g)]

    @classmethod
    def setup(cls, cfg, dist):
        m, t, spec = cfg.model, cfg.task, cfg.data.dataset
        conditional = m.num_classes > 0
        if spec == NAME:
            if m.channels != 1:
                raise ConfigError(f"config error: model.channels: {NAME} clips are grey: use 1")
            if conditional and (m.num_classes != 10 or t.digits != 1):
                raise ConfigError(f"config error: model.num_classes: a conditional model on {NAME} needs 10 classes "
                                  f"and task.digits 1 (got {m.num_classes} and {t.digits})")
            batches = ClipBatches(batch_size=cfg.train.batch_size, seed=cfg.seed, frames=m.frames,
                                  canvas=m.image_size, split=cfg.data.split, digit_size=t.digit_size,
                                  digits=t.digits, labels=conditional, device=dist.device, rank=dist.rank)
        elif spec.startswith(PREFIX):
            if conditional:
                raise ConfigError("config error: model.num_classes: videos:PATH clips have no labels: use 0")
            clips = read_videos(spec, cfg.data.split, size=m.image_size, channels=m.channels, frames=m.frames)
            batches = ClipBatches(batch_size=cfg.train.batch_size, seed=cfg.seed, frames=m.frames,
                                  canvas=m.image_size, clips=clips, device=dist.device, rank=dist.rank)
        else:
            raise UserError(f"unknown video dataset '{spec}' (valid: {NAME}, videos:PATH)")
        features = cfg.train.features
        if features == "auto":
            features = "digits" if spec == NAME else "none"

        def callbacks(out: Path):
            cbs = [SampleGrid(cfg.train.sample_every, out)]
            if features != "none" and dist.is_main:
                from genforge.metrics.fid import FIDEvaluator, feature_network
                real = reference_clips(cfg.model_dump(mode="json")).flatten(0, 1)
                cbs.append(GenerationMetrics(FIDEvaluator(real, feature_network(features, dist.device)),
                                             cfg.train.eval_every, cfg.train.eval_samples, seed=cfg.seed))
            return cbs
        return batches, callbacks, [str(d) for d in range(10)] if conditional else []

    def _frames(self, clips: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor):
        """The clips' frames at index (B, K) as (B * K, C, H, W), with their labels."""
        frames = clips[torch.arange(len(clips), device=clips.device)[:, None], index].flatten(0, 1)
        return frames, (() if labels is None else (labels.repeat_interleave(index.shape[1]),))

    def training_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        G, Di, Dv = self.networks["g"], self.networks["d_image"], self.networks["d_video"]
        kind, real = self.cfg.loss, batch["video"]
        labels = batch.get("label") if self.num_classes else None
        extra = () if labels is None else (labels,)
        b, frames = real.shape[:2]
        k = min(self.cfg.image_frames, frames)

        def codes():
            z_content = torch.randn(b, G.content_dim, device=self.device)
            return z_content, torch.randn(b, frames, G.noise_dim, device=self.device)

        with torch.no_grad():
            fake = G(*codes(), *extra)
        index = torch.randint(0, frames, (b, k), device=self.device)
        real_f, frame_extra = self._frames(real, labels, index)
        fake_f, _ = self._frames(fake, labels, index)
        di_real, di_fake = Di(real_f, *frame_extra), Di(fake_f, *frame_extra)
        dv_real, dv_fake = Dv(real, *extra), Dv(fake, *extra)
        loss_d = d_loss(kind, di_real, di_fake) + d_loss(kind, dv_real, dv_fake)
        metrics = {"di_real": di_real.detach().mean(), "di_fake": di_fake.detach().mean(),
                   "dv_real": dv_real.detach().mean(), "dv_fake": dv_fake.detach().mean()}
        if kind == "wgan-gp":
            scaler = self.scalers.get("d")
            scale = scaler.scale if scaler is not None else None
            gp = gradient_penalty(Di, real_f, fake_f, *frame_extra, scale=scale) + \
                gradient_penalty(Dv, real, fake, *extra, scale=scale)
            loss_d = loss_d + self.cfg.gp_weight * gp
            metrics["gp"] = gp.detach()
        metrics["loss_d"] = loss_d.detach()
        self.optimize("d", loss_d)

        if (step + 1) % self.cfg.n_critic == 0:
            for D in (Di, Dv):
                D.requires_grad_(False)  # no gradients for the critics' weights during the G step
            fake = G(*codes(), *extra)
            fake_f, frame_extra = self._frames(fake, labels, torch.randint(0, frames, (b, k), device=self.device))
            loss_g = g_loss(kind, Di(fake_f, *frame_extra)) + self.cfg.video_weight * g_loss(kind, Dv(fake, *extra))
            for D in (Di, Dv):
                D.requires_grad_(True)
            if self.optimize("g", loss_g) and self.ema is not None:
                self.ema.update(G)
            metrics["loss_g"] = loss_g.detach()
        return metrics

    def standing(self, module: nn.Module) -> nn.Module:
        """Batch-norm statistics measured on 8 batches of 16 of the generator's own clips."""
        return standing_batchnorm(module, batch_size=16,
                                  codes=lambda net, n, rng: sample_codes(net, n, net.frames, rng))

    @torch.no_grad()
    def sample_images(self, n: int = 64) -> torch.Tensor:
        """A grid for SampleGrid: 8 fixed clips, one a row, up to 8 of their frames evenly spread."""
        G = self.export_module()
        was = G.training
        G.eval()
        labels = (torch.arange(8, device=self.device) % self.num_classes,) if self.num_classes else ()
        clips = G(*self.grid_codes, *labels)
        G.train(was)
        frames = clips.shape[1]
        pick = torch.linspace(0, frames - 1, min(8, frames)).round().long()
        return clips[:, pick].flatten(0, 1)[:n]

    def generate(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """n frames of generated clips (for per-frame FID during training)."""
        G = self.export_module()
        return generate_clips(G, -(-n // G.frames), seed=seed).flatten(0, 1)[:n].to(self.device)
