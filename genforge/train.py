"""`genforge train`: validate everything, then create the run directory and hand over to fit().

Everything that can fail because of the user's input (config, data, resume directory) is checked
before the run directory exists, so a bad invocation leaves nothing half-written."""

import datetime as dt
import os
from pathlib import Path

import torch
import yaml

from genforge import config as C
from genforge.data import load_dataset
from genforge.engine import checkpoint, distributed
from genforge.engine.batches import EpochBatches
from genforge.engine.callbacks import GenerationMetrics, Previews, SampleGrid, Validation
from genforge.engine.fit import fit, seed_everything
from genforge.errors import ConfigError, UserError
from genforge.tasks import build_task


def resolve_config(config_path: str | None, overrides: list[str], resume: str | None) -> C.RunConfig:
    if resume is None:
        if config_path is None:
            raise UserError("train needs a config file (or --resume RUN_DIR)")
        return C.load_config(config_path, overrides)
    run_dir = Path(resume)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"cannot resume: {run_dir} is not a run directory (no config.yaml)")
    if checkpoint.latest(run_dir) is None:
        raise UserError(f"cannot resume: {run_dir} has no checkpoint yet")
    saved = C.validate(C.read_yaml(run_dir / "config.yaml"))
    if config_path is not None:
        given = C.load_config(config_path, overrides)
        if given.model != saved.model or given.task.kind != saved.task.kind:
            raise ConfigError(f"config error: {config_path} describes another model than the run "
                              f"{run_dir} (model section differs); resume with the run's own config")
    raw = saved.model_dump(mode="json")
    return C.validate(C.apply_overrides(raw, list(overrides)))


def new_run_dir(cfg: C.RunConfig, root: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = root / f"{cfg.name}-{stamp}", 1
    while path.exists():
        n += 1
        path = root / f"{cfg.name}-{stamp}-{n}"
    return path


def generation_evaluator(cfg: C.RunConfig, images: torch.Tensor, device):
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


def generation_setup(cfg: C.RunConfig, dist):
    """Batches of whole images (+ labels) and the sample-grid / FID callbacks."""
    conditional = cfg.model.num_classes > 0
    data = load_dataset(cfg.data.dataset, image_size=cfg.model.image_size, channels=cfg.model.channels,
                        split=cfg.data.split, labels=conditional or cfg.data.class_folders)
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
            cbs.append(GenerationMetrics(evaluator, cfg.train.eval_every, cfg.train.eval_samples, seed=cfg.seed))
        return cbs
    return batches, callbacks, data.class_names


def superres_setup(cfg: C.RunConfig, dist):
    """Random HR patches with on-the-fly LR, and validation PSNR on holdout crops."""
    from genforge.data import read_images
    from genforge.data.degrade import Degradation
    from genforge.data.patches import SRPatches, read_sr_pairs, validation_pairs
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
    if t.val_images and dist.is_main and cfg.data.dataset == "photos":
        holdout, _, _ = read_images("photos", split="holdout")
        val = validation_pairs(holdout, scale=scale, size=t.patch_size * 2, count=t.val_images,
                               channels=cfg.model.channels, device=dist.device)

    def callbacks(out: Path):
        return [Validation(val, cfg.train.eval_every or cfg.train.checkpoint_every)] if val else []
    return batches, callbacks, []


def translation_setup(cfg: C.RunConfig, dist):
    """Random crops of pairs / unpaired domains / label maps, and validation on holdout crops."""
    from genforge.data.translation import TranslationPatches, holdout_pairs, read_translation
    from genforge.models import build_export_network
    t, m = cfg.task, cfg.model
    label_nc = getattr(m, "label_nc", None)
    data = read_translation(cfg.data.dataset, cfg.data.split, label_nc=label_nc)
    expected = {"pix2pix": ("paired",), "cyclegan": ("unpaired", "paired"), "spade": ("semantic",)}[t.kind]
    if data.kind not in expected:
        raise ConfigError(f"config error: data.dataset: {cfg.data.dataset!r} is {data.kind} data; "
                          f"task.kind {t.kind} needs {' or '.join(expected)} data")
    if t.kind == "spade":
        if data.label_nc != m.label_nc:
            raise ConfigError(f"config error: model.label_nc: is {m.label_nc} but dataset "
                              f"{cfg.data.dataset!r} has {data.label_nc} classes")
        wanted = {"out_channels": data.b_channels}
    else:
        wanted = {"in_channels": data.a_channels, "out_channels": data.b_channels}
    for key, value in wanted.items():
        if getattr(m, key) != value:
            raise ConfigError(f"config error: model.{key}: is {getattr(m, key)} but dataset "
                              f"{cfg.data.dataset!r} has {value}-channel {'A' if key == 'in_channels' else 'B'} images")
    if getattr(m, "use_style", False) and t.patch_size < 32:
        raise ConfigError(f"config error: task.patch_size: {t.patch_size} is too small for the style encoder "
                          "(model.use_style needs at least 32)")
    multiple = build_export_network(m, t.kind).size_multiple
    if t.patch_size % multiple:
        raise ConfigError(f"config error: task.patch_size: {t.patch_size} is not a multiple of the "
                          f"generator's size multiple {multiple}")
    batches = TranslationPatches(data, patch_size=t.patch_size, batch_size=cfg.train.batch_size, seed=cfg.seed,
                                 flips=t.flips, scale_jitter=tuple(t.scale_jitter), device=dist.device,
                                 rank=dist.rank)
    val = []
    if t.val_images and dist.is_main and cfg.data.split == "train":
        try:
            holdout = read_translation(cfg.data.dataset, "holdout", label_nc=label_nc)
        except UserError:  # a user folder without a test split: no validation
            holdout = None
        if holdout is not None:
            val = [{k: v.to(dist.device) for k, v in b.items()}
                   for b in holdout_pairs(holdout, size=t.val_size, count=t.val_images, multiple=multiple)]

    def callbacks(out: Path):
        if not val:
            return []
        same = [b for b in val if all(b[k].shape == val[0][k].shape for k in b)]
        return [Validation(val, cfg.train.eval_every or cfg.train.checkpoint_every),
                Previews(same, cfg.train.sample_every, out)]
    return batches, callbacks, []


SETUPS = {"gan": generation_setup, "vae": generation_setup, "superres": superres_setup,
          "pix2pix": translation_setup, "cyclegan": translation_setup, "spade": translation_setup}


def init_weights(task, cfg: C.RunConfig) -> None:
    """Start the trained network from another run or model folder (stage 2 from stage 1)."""
    from genforge.deploy.pretrained import read_source
    source = read_source(cfg.init)
    if source.config.get("model") != cfg.model.model_dump(mode="json"):
        raise ConfigError(f"config error: init: {cfg.init} holds a different network than model: "
                          f"{source.config.get('model', {}).get('name')} with other settings")
    task.networks["g"].load_state_dict(source.state)
    if task.ema is not None:
        task.ema.module.load_state_dict(source.state)


def train(config_path: str | None = None, overrides: list[str] = (), *, resume: str | None = None,
          run_dir: str | None = None, runs_root: str = "runs", progress: bool = True,
          callbacks=()) -> Path:
    cfg = resolve_config(config_path, list(overrides), resume)
    dist = distributed.init(cfg.train.device)
    distributed.set_cpu_threads(cfg.train.threads, int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size)))
    seed_everything(cfg.seed + dist.rank)
    batches, make_callbacks, class_names = SETUPS[cfg.task.kind](cfg, dist)
    task = build_task(cfg, dist.device)
    if cfg.init and resume is None:
        init_weights(task, cfg)

    if resume is not None:
        out, start = Path(resume), checkpoint.latest(Path(resume))
    else:
        start = None
        out = Path(run_dir) if run_dir else new_run_dir(cfg, Path(runs_root))
        if dist.enabled:  # every rank must agree on rank 0's directory name
            box = [str(out)]
            torch.distributed.broadcast_object_list(box, src=0)
            out = Path(box[0])
        if out.exists() and any(out.iterdir()) and dist.is_main:
            raise UserError(f"run directory {out} exists and is not empty (use --resume to continue it)")
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.save_text(out / "config.yaml", C.dump(cfg))
        if class_names:
            checkpoint.save_text(out / "classes.yaml", yaml.safe_dump(class_names))

    callbacks = [*make_callbacks(out), *callbacks]
    try:
        fit(task, batches, cfg.train, run_dir=out, dist=dist, callbacks=callbacks, resume=start,
            config=cfg.model_dump(mode="json"), progress=progress and dist.is_main)
    finally:
        distributed.shutdown()
    return out
