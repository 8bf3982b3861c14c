"""The config sections every family shares (data, augmentation, optimizers, training); each family
declares its own model and task sections next to its code, and genforge/config.py joins them."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


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
    direction: Literal["AtoB", "BtoA"] = Field("AtoB", description=(
        "Translation: AtoB translates A (aligned: folder A or the left half; unaligned: trainA; semantic: the "
        "label maps) into B; BtoA swaps the sides (aligned and unaligned data)."))
    preprocess: Literal["resize_and_crop", "scale_width_and_crop", "crop", "none"] = Field("crop", description=(
        "Translation: how images become training crops of crop_size. crop: as they are, a smaller one scaled up "
        "to the crop; none: as they are, smaller ones left out; resize_and_crop: resized to load_size x "
        "load_size first; scale_width_and_crop: scaled to width load_size first (aspect kept)."))
    load_size: int | None = Field(None, ge=16, le=8192, description=(
        "Translation: the side (resize_and_crop) or width (scale_width_and_crop) images are resized to "
        "before cropping (default: crop_size)."))
    crop_size: int | None = Field(None, ge=16, le=2048, description=(
        "Translation: the training crop side; when given it replaces task.patch_size (the resolved config "
        "keeps that one)."))
    augment: AugmentConfig = AugmentConfig()


class Optim(Strict):
    optimizer: Literal["adam", "rmsprop"] = "adam"
    learning_rate: float = Field(2e-4, gt=0.0, le=1.0)
    betas: tuple[Beta, Beta] = Field((0.5, 0.999), description="Adam's decay rates, each in [0, 1).")
    schedule: Literal["constant", "cosine", "linear"] = Field(
        "constant", description="Learning-rate schedule; decay starts at decay_start * steps.")
    decay_start: float = Field(0.0, ge=0.0, lt=1.0)


class TrainConfig(Strict):
    steps: int = Field(2000, ge=1, description="Optimisation steps (discriminator steps for GANs).")
    max_minutes: float | None = Field(None, gt=0, le=1e6, description=(
        "Wall-clock budget of the whole run in minutes, resumes included (the time is kept in the checkpoint): "
        "training ends at whichever of steps and this comes first, and decaying learning-rate schedules follow "
        "whichever is further along. The run's event log and model card say which ended it. None: no budget."))
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
    threads: int = Field(0, ge=0, le=1024, description="CPU threads (0 = the cores this process may use).")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description=(
        "Forward passes under autocast in this dtype; backward and optimizer steps stay fp32. fp16 adds "
        "a GradScaler per optimizer; bf16 needs none and suits instance-norm networks (translation). "
        "On CPUs without fast bf16 (this one) it is correct but slow."))
    channels_last: bool = Field(False, description="Networks in channels-last memory format (faster "
                                                   "convolutions on recent GPUs).")
    compile: bool = Field(False, description="torch.compile the networks (not a WGAN-GP critic: "
                                             "compile has no double backward).")
    prefetch: Literal["auto", "on", "off"] = Field("auto", description=(
        "Build the next SR/translation batches in a background thread (pinned memory, non-blocking "
        "copies); auto: on CUDA only, where the GPU would otherwise wait for the CPU crops."))
