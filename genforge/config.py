"""Run configuration: typed schemas, YAML loading, `--set a.b=c` overrides, one-line errors.

A resolved RunConfig is saved in every run directory and checkpoint; it alone rebuilds the model."""

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from genforge.errors import ConfigError
from genforge.models import (DCGANConfig, ISRNetConfig, LapSRNConfig, ResNetGenConfig, SPADEConfig, UNetConfig,
                             VAEConfig)
from genforge.models.patchgan import PatchGANConfig
from genforge.models.sr_discriminator import SRDiscriminatorConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AugmentConfig(Strict):
    """Training-time augmentation, applied batched on the device; all off by default."""

    hflip: bool = Field(False, description="Random horizontal flips.")
    vflip: bool = Field(False, description="Random vertical flips.")
    scale_crop: float = Field(1.0, gt=0.0, le=1.0, description="Minimum area of a random crop (1 = off).")
    translate: float = Field(0.0, ge=0.0, le=0.5, description="Maximum shift as a fraction of the size.")
    brightness: float = Field(0.0, ge=0.0, le=1.0, description="Maximum additive brightness change.")
    contrast: float = Field(0.0, ge=0.0, le=1.0, description="Maximum relative contrast change.")
    noise: float = Field(0.0, ge=0.0, le=1.0, description="Standard deviation of added Gaussian noise.")


class DataConfig(Strict):
    dataset: str = Field("digits", description="digits, faces, photos or folder:PATH; translation: edges2photos, "
                                               "labels2photos, gray2color, photo2poster, aligned:PATH, "
                                               "unaligned:PATH or semantic:PATH.")
    split: Literal["train", "holdout", "all"] = "train"
    class_folders: bool = Field(False, description="folder:PATH: first-level sub-folders are classes.")
    lr_folder: str | None = Field(None, description="Super-resolution: paired LR images for folder:HR_PATH, "
                                                    "matched by file stem (an xN suffix is allowed).")
    augment: AugmentConfig = AugmentConfig()


class Optim(Strict):
    optimizer: Literal["adam", "rmsprop"] = "adam"
    learning_rate: float = Field(2e-4, gt=0.0, le=1.0)
    betas: tuple[float, float] = (0.5, 0.999)
    schedule: Literal["constant", "cosine", "linear"] = Field(
        "constant", description="Learning-rate schedule; decay starts at decay_start * steps.")
    decay_start: float = Field(0.0, ge=0.0, lt=1.0)


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


class VAETaskConfig(Strict):
    kind: Literal["vae"] = "vae"
    beta: float = Field(1.0, ge=0.0, description="Weight of the KL term (beta-VAE).")
    reconstruction: Literal["bce", "mse", "l1"] = "bce"
    optim: Optim = Optim(learning_rate=1e-3, betas=(0.9, 0.999))
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)


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


class TranslationData(Strict):
    """Training crops for image translation (shared by pix2pix, cyclegan and spade)."""

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


class Pix2PixTaskConfig(TranslationData):
    kind: Literal["pix2pix"] = "pix2pix"
    gan_loss: Literal["bce", "lsgan", "hinge", "none"] = Field(
        "bce", description="Adversarial loss; none trains with L1 alone (for comparison).")
    l1_weight: float = Field(100.0, ge=0.0, description="Weight of L1 to the target (pix2pix: 100).")
    discriminator: PatchGANConfig = PatchGANConfig(norm="batch")
    g_optim: Optim = Optim(schedule="linear", decay_start=0.5)
    d_optim: Optim = Optim(schedule="linear", decay_start=0.5)


class CycleGANTaskConfig(TranslationData):
    kind: Literal["cyclegan"] = "cyclegan"
    gan_loss: Literal["bce", "lsgan", "hinge"] = "lsgan"
    cycle_weight: float = Field(10.0, ge=0.0, description="A -> B -> A and B -> A -> B reconstruction (L1).")
    identity_weight: float = Field(0.5, ge=0.0, description="Identity loss, relative to cycle_weight; "
                                                            "needs equal channels in A and B.")
    pool_size: int = Field(50, ge=0, description="Image pool of past fakes shown to D (0 = off).")
    discriminator: PatchGANConfig = PatchGANConfig()
    g_optim: Optim = Optim(schedule="linear", decay_start=0.5)
    d_optim: Optim = Optim(schedule="linear", decay_start=0.5)


class SPADETaskConfig(TranslationData):
    kind: Literal["spade"] = "spade"
    gan_loss: Literal["hinge", "lsgan", "bce"] = "hinge"
    feature_matching_weight: float = Field(10.0, ge=0.0, description="L1 between D features of fake and real.")
    kl_weight: float = Field(0.05, ge=0.0, description="KL of the style encoder (model.use_style).")
    l1_weight: float = Field(0.0, ge=0.0, description="Optional L1 to the photo (there is no VGG loss: "
                                                      "no weights can be downloaded).")
    discriminator: PatchGANConfig = PatchGANConfig(norm="spectral", n_layers=4, num_scales=2)
    g_optim: Optim = Optim(learning_rate=1e-4, betas=(0.0, 0.9))
    d_optim: Optim = Optim(learning_rate=4e-4, betas=(0.0, 0.9))  # two time-scale update rule


class TrainConfig(Strict):
    steps: int = Field(2000, ge=1, description="Optimisation steps (discriminator steps for GANs).")
    batch_size: int = Field(64, ge=1, le=65536, description="Per process.")
    checkpoint_every: int = Field(500, ge=1)
    keep_last: int = Field(3, ge=1, description="Checkpoints kept.")
    log_every: int = Field(50, ge=1)
    sample_every: int = Field(500, ge=1, description="Sample grids to TensorBoard and samples/.")
    eval_every: int = Field(0, ge=0, description="FID/KID every N steps (0 = only at the end).")
    eval_samples: int = Field(1000, ge=10)
    features: str = Field("auto", description="FID feature network: auto, digits, none, torchscript:PATH.")
    max_nonfinite: int = Field(5, ge=1, description="Non-finite steps in a row before restoring.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0, description="CPU threads (0 = the cores this process may use).")


ModelConfig = Annotated[DCGANConfig | VAEConfig | ISRNetConfig | LapSRNConfig | UNetConfig | ResNetGenConfig
                        | SPADEConfig, Field(discriminator="name")]
TaskConfig = Annotated[GANTaskConfig | VAETaskConfig | SRTaskConfig | Pix2PixTaskConfig | CycleGANTaskConfig
                       | SPADETaskConfig, Field(discriminator="kind")]
COMPATIBLE = {"gan": ("dcgan",), "vae": ("vae",), "superres": ("isrnet", "lapsrn"),
              "pix2pix": ("unet", "resnet"), "cyclegan": ("resnet", "unet"), "spade": ("spade",)}
TRANSLATION_TASKS = ("pix2pix", "cyclegan", "spade")
SR_MODELS = COMPATIBLE["superres"]


class RunConfig(Strict):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$", description="Prefix of the run directory.")
    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelConfig
    task: TaskConfig
    train: TrainConfig = TrainConfig()
    init: str | None = Field(None, description="Run directory or model folder whose weights start the network.")

    @model_validator(mode="after")
    def _task_fits_model(self):
        if self.model.name not in COMPATIBLE[self.task.kind]:
            raise ValueError(f"task.kind {self.task.kind!r} cannot train model.name {self.model.name!r}"
                             f" (it trains: {', '.join(COMPATIBLE[self.task.kind])})")
        return self


_UNION_TAGS = {"dcgan", "vae", "gan", "isrnet", "lapsrn", "superres", "unet", "resnet", "spade", "pix2pix",
               "cyclegan"}


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = [str(p) for i, p in enumerate(first["loc"]) if not (i == 1 and str(p) in _UNION_TAGS)]
    key = ".".join(loc) or "config"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif "input" in first and first["type"] not in ("value_error", "union_tag_invalid", "model_type"):
        msg = f"{msg} (got {first['input']!r})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"config error: {key}: {msg}{more}"


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"config error: --set {item!r}: expected KEY=VALUE, e.g. train.steps=100")
    key, raw = item.split("=", 1)
    if not key:
        raise ConfigError(f"config error: --set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"config error: --set {item}: {'.'.join(path[:i + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return raw


def validate(raw: dict) -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError("config error: the file must hold a mapping of sections (name, data, model, task, train)")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config error: no such config file: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise ConfigError(f"config error: {path}{line}: not valid YAML") from None
    return raw if raw is not None else {}


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"config error: {path}: expected a mapping of sections")
    return validate(apply_overrides(raw, list(overrides)))


def dump(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
