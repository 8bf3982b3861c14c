"""`genforge train`: validate everything, then create the run directory and hand over to fit().

What every family shares lives here; a family's data, checks and callbacks are its Task's setup().

Everything that can fail because of the user's input (config, data, resume directory) is checked
before the run directory exists, so a bad invocation leaves nothing half-written."""

import datetime as dt
import os
from pathlib import Path

import torch
import yaml

from genforge import config as C
from genforge import registry
from genforge.checkpoint_files import read_source
from genforge.engine import checkpoint, distributed
from genforge.engine.fit import fit, seed_everything
from genforge.errors import ConfigError, UserError


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


def init_weights(task, cfg: C.RunConfig) -> None:
    """Start the trained network from another run or model folder (stage 2 from stage 1)."""
    source = read_source(cfg.init)
    if source.config.get("model") != cfg.model.model_dump(mode="json"):
        theirs = source.config.get("model") or {}
        raise ConfigError(f"config error: init: {cfg.init} holds a different network than model: "
                          f"{theirs.get('name')} with other settings")
    kind = (source.config.get("task") or {}).get("kind")
    try:
        task.init_from(source.state)
    except RuntimeError as err:
        raise ConfigError(f"config error: init: the weights of {cfg.init} (a {kind} model) do not fit a "
                          f"{cfg.task.kind} task: {str(err).strip().splitlines()[0][:200]}") from None


def train(config_path: str | None = None, overrides: list[str] = (), *, resume: str | None = None,
          run_dir: str | None = None, runs_root: str = "runs", progress: bool = True,
          callbacks=()) -> Path:
    cfg = resolve_config(config_path, list(overrides), resume)
    dist = distributed.init(cfg.train.device)
    distributed.set_cpu_threads(cfg.train.threads, int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size)))
    seed_everything(cfg.seed + dist.rank)
    task_class = registry.task_row(cfg.task.kind).task
    batches, make_callbacks, class_names = task_class.setup(cfg, dist)
    task = task_class(cfg, dist.device)
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
