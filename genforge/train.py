"""`genforge train`: validate everything, then create the run directory and hand over to fit().

What every family shares lives here; a family's data, checks and callbacks are its Task's setup().

Everything that can fail because of the user's input (config, data, resume directory) is checked
before the run directory exists, so a bad invocation leaves nothing half-written."""

import datetime as dt
import os
import shutil
from pathlib import Path

import torch
import yaml

from genforge import config as C
from genforge import registry
from genforge.checkpoint_files import make_dir, read_source
from genforge.engine import checkpoint, distributed
from genforge.engine.fit import fit, seed_everything
from genforge.errors import ConfigError, DiskError, UserError


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
    # read (and checked) before anything is written: a resume from a bad checkpoint changes nothing
    start = checkpoint.load_checkpoint(checkpoint.latest(Path(resume))) if resume is not None else None
    dist = distributed.init(cfg.train.device)
    distributed.set_cpu_threads(cfg.train.threads, int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size)))
    seed_everything(cfg.seed + dist.rank)
    task_class = registry.task_row(cfg.task.kind).task
    batches, make_callbacks, class_names = task_class.setup(cfg, dist)
    task = task_class(cfg, dist.device)
    if cfg.init and resume is None:
        init_weights(task, cfg)

    if resume is not None:
        out = Path(resume)
    else:
        out = Path(run_dir) if run_dir else new_run_dir(cfg, Path(runs_root))
        if dist.enabled:  # every rank must agree on rank 0's directory name
            box = [str(out)]
            torch.distributed.broadcast_object_list(box, src=0)
            out = Path(box[0])
        if out.exists() and not out.is_dir():
            raise UserError(f"run directory {out} exists and is a file, not a folder")
        if out.exists() and any(out.iterdir()) and dist.is_main:
            raise UserError(f"run directory {out} exists and is not empty (use --resume to continue it)")
    created = not out.exists()
    try:
        if dist.is_main:
            make_dir(out, "run directory")
            _end_with_whole_line(out / "metrics.jsonl")
            checkpoint.save_text(out / "config.yaml", C.dump(cfg))
            if class_names:
                checkpoint.save_text(out / "classes.yaml", yaml.safe_dump(class_names))
        callbacks = [*make_callbacks(out), *callbacks]
        try:
            fit(task, batches, cfg.train, run_dir=out, dist=dist, callbacks=callbacks, resume=start,
                config=cfg.model_dump(mode="json"), progress=progress and dist.is_main)
        finally:
            distributed.shutdown()
    except OSError as err:
        if not DiskError.matches(err) or not dist.is_main:
            raise
        raise _disk_full(err, out, fresh=resume is None, created=created) from None
    return out


def _disk_full(err: OSError, out: Path, *, fresh: bool, created: bool) -> DiskError:
    """The error for a write that failed mid-run; the last whole checkpoint stays where it is (they
    are written atomically). A new run without one is taken back (the folder removed, or emptied if
    it was given empty): there is nothing in it to continue."""
    last = checkpoint.latest(out) if out.is_dir() else None
    if last is not None:
        then = f"the last good checkpoint is {last}; free some space and continue with: genforge train --resume {out}"
    elif fresh and out.is_dir():
        for child in [out] if created else list(out.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        then = f"no checkpoint had been written, so {out} was {'removed' if created else 'emptied'}"
    else:
        then = "no checkpoint had been written"
    return DiskError(f"{DiskError.from_os(err, f'cannot write run directory {out}')}; {then}")


def _end_with_whole_line(path: Path) -> None:
    """Cut a line a full disk or a kill left half-written at the end of a JSON-lines log, so that a
    resumed run appends whole records after whole records."""
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(max(0, size - 65536))
        tail = f.read()
        cut = tail.rfind(b"\n")
        f.truncate(size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size))
