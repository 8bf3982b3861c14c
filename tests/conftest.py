import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


def tiny_raw(kind: str = "gan", **sections) -> dict:
    """A seconds-long config on 8x8 digits."""
    model = {"name": "vae" if kind == "vae" else "dcgan", "image_size": 8, "channels": 1, "latent_dim": 8,
             "width": 8}
    task = {"kind": kind} if kind == "vae" else {"kind": "gan", "loss": "bce", "ema_decay": 0.9}
    raw = {"name": "tiny", "seed": 0, "data": {"dataset": "digits"}, "model": model, "task": task,
           "train": {"steps": 6, "batch_size": 16, "checkpoint_every": 3, "log_every": 2, "sample_every": 3,
                     "eval_every": 0, "eval_samples": 50, "features": "none", "threads": 1}}
    for name, values in sections.items():
        raw[name].update(values)
    return raw


@pytest.fixture
def write_config(tmp_path):
    def write(raw: dict, name: str = "cfg.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(raw))
        return path
    return write


def run_cli(*args, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    """The real command in a subprocess, as a user runs it."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "genforge", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)
