"""Image-to-image translation: Pix2Pix (paired), CycleGAN (unpaired), SPADE (from semantic maps).

Batches hold images in [-1, 1]: {"a", "b"} for pairs and unpaired domains, {"label", "b"} for
semantic maps (int64 class ids, 255 = don't care). The three tasks share the data setup, validation
against a known target and the preview rows (input | output | target); CycleGAN and SPADE are in
their own files."""

from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from genforge import registry
from genforge.data.grid import LABEL_PALETTE
from genforge.data.pair_folders import read_translation
from genforge.data.patches import TranslationPatches, holdout_pairs
from genforge.data.preprocess import apply_direction, preprocess_translation
from genforge.engine.callbacks import Announce, Previews, Validation
from genforge.errors import ConfigError, UserError
from genforge.losses import multiscale_d_loss, multiscale_g_loss
from genforge.metrics.psnr_ssim import batch_psnr
from genforge.models.patchgan import MultiScaleDiscriminator, PatchGANConfig
from genforge.schema import Optim, Strict
from genforge.tasks.base import Task, evaluating, make_optimizer, make_scheduler

# the seconds-long trainings the shared tests run (16-32 px crops of the bundled sets, tiny D)
TINY_TRANSLATION = {"task": {"patch_size": 16, "val_images": 1, "val_size": 32,
                             "discriminator": {"width": 8, "n_layers": 2}},
                    "train": {"batch_size": 2}}

_PALETTE = torch.from_numpy(LABEL_PALETTE).float() / 127.5 - 1


def show(x: torch.Tensor, *, labels: bool = False) -> torch.Tensor:
    """A batch as 3-channel images in [-1, 1] for grids: grey repeated, class ids coloured."""
    if labels:
        return _PALETTE.to(x.device)[x.clamp(0, 255)].permute(0, 3, 1, 2)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]



class TranslationTaskConfig(Strict):
    """Training crops for image translation (shared by pix2pix, cyclegan and spade)."""

    crop_from_data: ClassVar[bool] = True  # data.crop_size, when given, sets patch_size (genforge/config.py)

    patch_size: int = Field(256, ge=16, le=2048, description="Training crop side; a multiple of the "
                                                             "generator's size multiple.")
    scale_jitter: list[float] = Field([1.0], description="Images are also used downscaled by these factors.")
    flips: bool = Field(True, description="Random horizontal flips (the same on both sides of a pair).")
    val_images: int = Field(3, ge=0, description="Holdout images for validation L1/PSNR and preview grids.")
    val_size: int = Field(256, ge=16, description="Side of the holdout centre crops.")
    input_noise: float = Field(0.0, ge=0.0, le=0.5, description=(
        "Gaussian noise (sigma, in [-1, 1] units) added to generator inputs in training. Synthetic flat "
        "images (posters) give feature maps of near-zero variance that instance norms amplify into "
        "overflowing gradients; a little noise keeps every channel alive."))
    grad_clip: float = Field(100.0, ge=0.0, description=(
        "Clip each optimizer's gradient norm to this (0 = off). Typical norms are 5-50; a near-flat crop "
        "through a chain of instance norms can give 1e28, which would overflow Adam's state."))


class Pix2PixTaskConfig(TranslationTaskConfig):
    kind: Literal["pix2pix"] = "pix2pix"
    gan_loss: Literal["bce", "lsgan", "hinge", "none"] = Field(
        "bce", description="Adversarial loss; none trains with L1 alone (for comparison).")
    l1_weight: float = Field(100.0, ge=0.0, description="Weight of L1 to the target (pix2pix: 100).")
    discriminator: PatchGANConfig = PatchGANConfig(norm="batch")
    g_optim: Optim = Optim(schedule="linear", decay_start=0.5)
    d_optim: Optim = Optim(schedule="linear", decay_start=0.5)


class TranslationTask(Task):
    """Shared parts: the generator that validation and deployment use, preview rows, validation."""

    input_key = "a"
    data_kinds: tuple[str, ...] = ("paired",)  # the translation data (genforge/data) it trains on

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

    @classmethod
    def check_data(cls, cfg, data) -> None:
        """The model's channels must be the data's."""
        m = cfg.model
        for key, value, side in (("in_channels", data.a_channels, "A"), ("out_channels", data.b_channels, "B")):
            if getattr(m, key) != value:
                raise ConfigError(f"config error: model.{key}: is {getattr(m, key)} but dataset "
                                  f"{cfg.data.dataset!r} has {value}-channel {side} images")

    @classmethod
    def setup(cls, cfg, dist):
        """Random crops of pairs / unpaired domains / label maps, and validation on holdout crops."""
        t, m, d = cfg.task, cfg.model, cfg.data
        label_nc = getattr(m, "label_nc", None)

        def read(split: str):
            """The split with data.direction and data.preprocess applied, and its counts."""
            data = apply_direction(read_translation(d.dataset, split, label_nc=label_nc), d.direction, d.dataset)
            return preprocess_translation(data, d.preprocess, load_size=d.load_size, crop_size=t.patch_size)

        data, summary = read(d.split)
        if data.kind not in cls.data_kinds:
            raise ConfigError(f"config error: data.dataset: {cfg.data.dataset!r} is {data.kind} data; "
                              f"task.kind {t.kind} needs {' or '.join(cls.data_kinds)} data")
        cls.check_data(cfg, data)
        multiple = registry.task_row(t.kind).export_network(m).size_multiple
        if t.patch_size % multiple:
            raise ConfigError(f"config error: task.patch_size: {t.patch_size} is not a multiple of the "
                              f"generator's size multiple {multiple}")
        batches = TranslationPatches(data, patch_size=t.patch_size, batch_size=cfg.train.batch_size,
                                     seed=cfg.seed, flips=t.flips, scale_jitter=tuple(t.scale_jitter),
                                     device=dist.device, rank=dist.rank)
        val = []
        if t.val_images and dist.is_main and cfg.data.split == "train":
            try:  # resized as the training images are, so that validation sees the scale training does
                holdout, _ = read("holdout")
            except UserError:  # a user folder without a test split: no validation
                holdout = None
            if holdout is not None:
                val = [{k: v.to(dist.device) for k, v in b.items()}
                       for b in holdout_pairs(holdout, size=t.val_size, count=t.val_images, multiple=multiple)]

        def callbacks(out: Path):
            announce = Announce(summary.line(d.dataset, d.split, d.direction, d.preprocess))
            if not val:
                return [announce]
            same = [b for b in val if all(b[k].shape == val[0][k].shape for k in b)]
            return [announce, Validation(val, cfg.train.eval_every or cfg.train.checkpoint_every),
                    Previews(same, cfg.train.sample_every, out)]
        return batches, callbacks, []

    def generator_input(self, batch: dict) -> torch.Tensor:
        return batch["a"]

    def noisy(self, x: torch.Tensor) -> torch.Tensor:
        """A training input to a generator, with task.input_noise added (images only, not label maps)."""
        return x + self.cfg.input_noise * torch.randn_like(x) if self.cfg.input_noise > 0 else x

    @torch.no_grad()
    def translate_batch(self, batch: dict) -> torch.Tensor:
        with evaluating(self.export_module()) as net:
            return net(self.generator_input(batch))

    @torch.no_grad()
    def validation_step(self, batch: dict) -> dict[str, float]:
        if "b" not in batch:
            return {}
        fake = self.translate_batch(batch)
        return {"l1": float((fake - batch["b"]).abs().mean() / 2),  # in [0, 1] units
                "psnr": float(batch_psnr(fake, batch["b"], value_range=(-1, 1), round_real=True))}

    def trained_network(self) -> nn.Module:
        return self.networks["g"]

    @torch.no_grad()
    def preview(self, batch: dict) -> torch.Tensor:
        """input | output [| target] for one holdout batch, as 3-channel images in [-1, 1]."""
        shown = show(batch[self.input_key], labels=self.input_key == "label")
        rows = [shown, show(self.translate_batch(batch))]
        if "b" in batch:
            rows.append(show(batch["b"]))
        return torch.stack(rows, 1).flatten(0, 1)


@registry.register_task("pix2pix", Pix2PixTaskConfig, models=("unet", "resnet"), family="translation",
                        tiny={**TINY_TRANSLATION, "data": {"dataset": "edges2photos"},
                              "model": {"in_channels": 1, "out_channels": 3}})
class Pix2PixTask(TranslationTask):
    """Isola et al. 2017: conditional GAN on (A, B) pairs with a PatchGAN on the concatenated pair,
    plus L1 to the target (weight 100). gan_loss none is the L1-only baseline."""

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        G = registry.model_row(cfg.model.name).build(cfg.model).to(device)
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
