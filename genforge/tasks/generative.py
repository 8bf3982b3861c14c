"""What the generation tasks (GAN, VAE) share: whole-image batches with labels, a fixed grid of
latents for sample grids, and FID/KID during training against the training images; and what the
GAN tasks (images here, clips in tasks/videogan.py) share: the generator's and critics' optimizers,
and the generator's EMA as the export module, with batch-norm statistics of its own."""

from pathlib import Path

import torch
from torch import nn

from genforge.data import load_dataset
from genforge.data.augment import Augment
from genforge.engine.batches import EpochBatches
from genforge.engine.callbacks import GenerationMetrics, SampleGrid
from genforge.engine.ema import EMA
from genforge.errors import ConfigError, UserError
from genforge.models.sampling import draw_latents, generate, prior_tensors, standing_batchnorm
from genforge.tasks.base import Task, make_optimizer, make_scheduler

# the seconds-long training the shared tests run for every generation task (8x8 digits)
TINY_GENERATION = {"data": {"dataset": "digits"}, "model": {"image_size": 8, "channels": 1, "latent_dim": 8},
                   "train": {"batch_size": 16, "features": "none"}}


def training_images(cfg):
    """The generation data a config trains on (images uint8, labels when conditional or class folders)."""
    return load_dataset(cfg.data.dataset, image_size=cfg.model.image_size, channels=cfg.model.channels,
                        split=cfg.data.split, labels=cfg.model.num_classes > 0 or cfg.data.class_folders)


def generation_evaluator(cfg, images: torch.Tensor, device):
    """FID/KID against the training images with the configured feature network, or None."""
    spec = cfg.train.features
    if spec == "none":
        return None
    if spec == "auto":
        if cfg.data.dataset != "digits":
            return None
        spec = "digits"
    from genforge.metrics.fid import FIDEvaluator, feature_network
    real = images.float().div(127.5).sub(1.0)
    return FIDEvaluator(real, feature_network(spec, device))


class GenerativeTask(Task):
    """A task whose export module maps z [+ labels] to images (GANs, the VAE decoder)."""

    def __init__(self, cfg, device: torch.device):
        super().__init__(device)
        self.num_classes = cfg.model.num_classes
        self.augment = Augment(**cfg.data.augment.model_dump())
        self.grid_seed = cfg.seed + 12345
        g = torch.Generator().manual_seed(self.grid_seed)  # fixed z: grids comparable over time
        self.grid_z = torch.randn(64, cfg.model.latent_dim, generator=g).to(device)

    @classmethod
    def setup(cls, cfg, dist):
        """Batches of whole images (+ labels) and the sample-grid / FID callbacks."""
        conditional = cfg.model.num_classes > 0
        data = training_images(cfg)
        if conditional and data.num_classes != cfg.model.num_classes:
            raise ConfigError(f"config error: model.num_classes: is {cfg.model.num_classes} but dataset "
                              f"{cfg.data.dataset!r} has {data.num_classes} classes")
        if len(data) < cfg.train.batch_size * dist.world_size:
            raise UserError(f"dataset {cfg.data.dataset!r} has {len(data)} images, fewer than one batch "
                            f"({cfg.train.batch_size} x {dist.world_size} processes)")
        batches = EpochBatches(data.images, data.labels, cfg.train.batch_size, seed=cfg.seed,
                               device=dist.device, rank=dist.rank, world_size=dist.world_size)

        def callbacks(out: Path):
            cbs = [SampleGrid(cfg.train.sample_every, out)]
            evaluator = generation_evaluator(cfg, data.images, dist.device) if dist.is_main else None
            if evaluator is not None:
                cbs.append(GenerationMetrics(evaluator, cfg.train.eval_every, cfg.train.eval_samples,
                                             seed=cfg.seed))
            return cbs
        return batches, callbacks, data.class_names

    @torch.no_grad()
    def sample_images(self, n: int = 64) -> torch.Tensor:
        gen = self.export_module()
        was_training = gen.training
        gen.eval()
        labels = (torch.arange(n, device=self.device) % self.num_classes,) if self.num_classes else ()
        z, prior = self.grid_z[:n], prior_tensors(gen)
        if prior:  # a fitted prior (VAE): its draws from the fixed seed
            z = draw_latents(gen, n, torch.Generator().manual_seed(self.grid_seed), prior).to(self.device)
        out = gen(z, *labels)
        gen.train(was_training)
        return out

    def generate(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """n samples of the export module from a private RNG (for FID during training)."""
        return generate(self.export_module(), n, seed=seed)


class AdversarialGenerator:
    """Mixed into a Task whose networks["g"] is a generator trained against critics (GANTask,
    VideoGANTask): task.g_optim for the generator, task.d_optim for the critics (one optimizer over
    all of them), the EMA of the generator's weights (task.ema_decay) as the export module."""

    def init_optimizers(self, generator: nn.Module, critic_params, total_steps: int) -> None:
        self.optimizers = {"g": make_optimizer(self.cfg.g_optim, generator.parameters()),
                           "d": make_optimizer(self.cfg.d_optim, critic_params)}
        self.schedulers = {k: make_scheduler(opt, self.cfg.g_optim if k == "g" else self.cfg.d_optim, total_steps)
                           for k, opt in self.optimizers.items()}
        self.ema = EMA(generator, self.cfg.ema_decay) if self.cfg.ema_decay > 0 else None
        self._standing: tuple[int, nn.Module] | None = None  # (EMA updates, export module) cache

    def trained_network(self) -> nn.Module:
        return self.networks["g"]

    def compilable(self) -> list[str]:
        # the generator and every critic; compile has no double backward (the gradient penalty)
        return ["g"] if self.cfg.loss == "wgan-gp" else list(self.networks)

    def standing(self, module: nn.Module) -> nn.Module:
        """`module` with batch-norm statistics measured on its own outputs (models/sampling.py)."""
        return standing_batchnorm(module)

    def export_module(self) -> nn.Module:
        if self.ema is None:
            return self.networks["g"]
        # the EMA weights get batch-norm statistics of their own (the live network's would not fit them),
        # measured once per EMA state: the checkpoint, sample grid and FID at one step share them
        if self._standing is None or self._standing[0] != self.ema.num_updates:
            self._standing = (self.ema.num_updates, self.standing(self.ema.module))
        return self._standing[1]
