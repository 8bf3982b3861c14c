"""Refit the latent mixture of a trained VAE run without training it again.

The gmm prior (model.latent_prior: gmm) is an ex-post density: it is fitted to the encoder's posteriors
after training and changes no weight, so its settings can be changed on a finished run:

    python scripts/refit_vae_prior.py runs/vae --set model.prior_components=80 --set model.prior_draws=5

The run's latest checkpoint is rewritten in place (atomically) with the refitted prior in its task state
and export, and config.yaml with the new model keys; the result is the checkpoint a training with those
keys from the start would have written (fitting draws no random numbers of the training stream)."""

import argparse
import sys
from pathlib import Path

import torch

from genforge import config as C
from genforge.engine import checkpoint
from genforge.errors import UserError
from genforge.models.sampling import PRIOR_TENSORS
from genforge.registry import build_task
from genforge.tasks.generative import training_images

PRIOR_KEYS = ("latent_prior", "prior_components", "prior_covariance", "prior_draws")


def refit(run_dir: Path, overrides: list[str]) -> Path:
    if any(not o.startswith(tuple(f"model.{k}=" for k in PRIOR_KEYS)) for o in overrides):
        raise UserError(f"only the prior's keys can change: {', '.join('model.' + k for k in PRIOR_KEYS)}")
    path = checkpoint.latest(run_dir)
    if path is None:
        raise UserError(f"{run_dir} has no checkpoint")
    state = checkpoint.load_checkpoint(path)
    cfg = C.validate(C.apply_overrides(C.read_yaml(run_dir / "config.yaml"), overrides))
    if cfg.task.kind != "vae" or cfg.model.latent_prior != "gmm":
        raise UserError("refitting needs a VAE run and model.latent_prior=gmm")
    task = build_task(cfg, torch.device("cpu"))
    networks = state["task"]["networks"]
    stale = {f"decoder.{name}" for name in PRIOR_TENSORS}  # refitted below, maybe with another shape
    networks["vae"] = {k: v for k, v in networks["vae"].items() if k not in stale}
    task.load_state_dict(state["task"])
    data = training_images(cfg)
    task.prior_data = (data.images, data.labels if cfg.model.num_classes else None)
    export = task.export_module()  # fits the prior
    state.update(task=task.state_dict(), export=export.state_dict(), config=cfg.model_dump(mode="json"))
    checkpoint.save_atomic(state, path)
    checkpoint.save_text(run_dir / "config.yaml", C.dump(cfg))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        path = refit(args.run, args.set)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"refitted the prior in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
