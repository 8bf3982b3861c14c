"""What several test files share: tiny configs, the real CLI in a subprocess, exact-resume checks and
model folders with random weights (for tests that need a model, not a training)."""

import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

# genforge is imported inside the helpers, so that a library module that does not import (mid-change)
# fails only the tests that use it

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


def tiny_raw(kind: str = "gan", **sections) -> dict:
    """A seconds-long config on 8x8 digits."""
    model = {"name": "vae" if kind == "vae" else "dcgan", "image_size": 8, "channels": 1, "latent_dim": 8,
             "width": 8}
    task = {"kind": kind} if kind == "vae" else {"kind": "gan", "loss": "bce", "ema_decay": 0.9}
    raw = {"name": "tiny", "seed": 0, "data": {"dataset": "digits"}, "model": model, "task": task,
           "train": {"device": "cpu", "steps": 6, "batch_size": 16, "checkpoint_every": 3, "log_every": 2,
                     "sample_every": 3, "eval_every": 0, "eval_samples": 50, "features": "none", "threads": 1}}
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


# -- tiny configs --------------------------------------------------------------------------------

def sr_raw(model=None, **task) -> dict:
    """A seconds-long super-resolution config (ISRNet x2 unless `model` is given) on the bundled photos."""
    model = model or {"name": "isrnet", "scale": 2, "channels": 3, "width": 8, "levels": 1,
                      "blocks_per_level": 1, "bottleneck_blocks": 1}
    return {"name": "sr", "seed": 0, "data": {"dataset": "photos"}, "model": model,
            "task": {"kind": "superres", "patch_size": 32, "val_images": 2, **task},
            "train": {"device": "cpu", "steps": 4, "batch_size": 2, "checkpoint_every": 2, "log_every": 2,
                      "eval_every": 2, "threads": 1}}


TINY_D = {"width": 8, "n_layers": 2}


def translation_raw(kind: str) -> dict:
    """Seconds-long Pix2Pix / CycleGAN / SPADE configs on the bundled datasets, 16-32 px crops."""
    if kind == "pix2pix":
        data, model = "edges2photos", {"name": "unet", "in_channels": 1, "out_channels": 3, "image_size": 16,
                                       "width": 4}
    elif kind == "cyclegan":
        data, model = "photo2poster", {"name": "resnet", "width": 4, "n_blocks": 1, "n_down": 2}
    else:
        data, model = "labels2photos", {"name": "spade", "label_nc": 8, "width": 4, "num_up": 2,
                                        "spade_hidden": 8, "use_style": True, "z_dim": 4, "encoder_width": 4}
    task = {"kind": kind, "patch_size": 16, "val_images": 2, "val_size": 32, "discriminator": dict(TINY_D)}
    if kind == "spade":
        task["discriminator"]["num_scales"] = 2
        task["patch_size"] = 32  # the style encoder needs 32 px
    return {"name": kind, "seed": 0, "data": {"dataset": data}, "model": model, "task": task,
            "train": {"device": "cpu", "steps": 4, "batch_size": 2, "checkpoint_every": 2, "log_every": 2,
                      "eval_every": 2,
                      "sample_every": 2, "threads": 1}}


# -- exact resume ------------------------------------------------------------------------------

def weights(run_dir):
    """The task state (networks, optimisers, EMA, ...) of a run's latest checkpoint."""
    from genforge.engine import checkpoint
    return checkpoint.load(checkpoint.latest(run_dir))["task"]


def flat(state, prefix=""):
    if isinstance(state, dict):
        for k, v in state.items():
            yield from flat(v, f"{prefix}{k}.")
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from flat(v, f"{prefix}{i}.")
    else:
        yield prefix, state


def assert_same_state(a, b):
    """Bit-identical nested states: every tensor torch.equal, everything else ==."""
    fa, fb = dict(flat(a)), dict(flat(b))
    assert fa.keys() == fb.keys()
    for k in fa:
        if torch.is_tensor(fa[k]):
            assert torch.equal(fa[k], fb[k]), k
        else:
            assert fa[k] == fb[k], k


def interrupt_at(step: int):
    """A training callback that interrupts the run after `step` (SIGINT, as Ctrl-C does)."""
    from genforge.engine.callbacks import Callback

    class SignalAt(Callback):
        def on_step(self, at, task, logger):
            if at == step:
                os.kill(os.getpid(), signal.SIGINT)

    return SignalAt()


def straight_and_resumed(config: str, root: Path, stop_at: int) -> tuple[Path, Path]:
    """Runs `config` in one go (root/straight), and again interrupted after step `stop_at` then resumed
    (root/cut); returns both run directories, whose states an exact resume makes bit-identical."""
    from genforge.engine.fit import Interrupted
    from genforge.train import train
    straight = train(config, run_dir=str(root / "straight"), progress=False)
    with pytest.raises(Interrupted) as stop:
        train(config, run_dir=str(root / "cut"), progress=False, callbacks=[interrupt_at(stop_at)])
    assert stop.value.step == stop_at and stop.value.path.name == f"step_{stop_at:08d}.pt"
    resumed = train(resume=str(root / "cut"), progress=False)
    assert resumed == root / "cut"
    return straight, resumed


# -- networks and model folders with random weights ----------------------------------------------------

def randomise_(*layers, std=0.3, bias_std=0.1):
    """Zero-initialised layers hide everything behind them; give them weights to test with."""
    with torch.no_grad():
        for layer in layers:
            layer.weight.normal_(0, std)
            if getattr(layer, "bias", None) is not None:
                layer.bias.normal_(0, bias_std)


def zero_layers(module: nn.Module) -> list[nn.Module]:
    """The layers whose weight is all zero: the zero-initialised outputs of residual branches (ISRNet's
    tail, LapSRN's residual convs, non-local blocks), which make an untrained network plain bicubic."""
    return [m for m in module.modules()
            if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() > 1 and not m.weight.any()]


def tiny_model_folder(root: Path, raw: dict, name: str) -> Path:
    """The model folder root/name for the config `raw`, with random weights and no training.

    The task is built as training builds it, and its export network (what a model folder holds) keeps
    its initial weights, with the zero-initialised layers given small random ones so that no branch is
    switched off; the library writes the folder (and checks that it loads back)."""
    from genforge.config import validate
    from genforge.deploy.pretrained import ModelSource, write_folder
    from genforge.registry import build_task
    cfg = validate(raw)
    torch.manual_seed(cfg.seed)
    module = build_task(cfg, torch.device("cpu")).export_module()
    randomise_(*zero_layers(module), std=0.05, bias_std=0.0)
    state = {k: v.detach() for k, v in module.state_dict().items()}
    return write_folder(ModelSource(name, cfg.model_dump(mode="json"), state), root / name)


TINY_MODELS = {  # model name (= folder name) -> its config
    "tiny-sr-x2": lambda: sr_raw(),
    "tiny-lapsrn-x3": lambda: sr_raw({"name": "lapsrn", "scale": 3, "channels": 3, "width": 8, "depth": 1},
                                     patch_size=24),
    "tiny-cgan": lambda: tiny_raw(model={"num_classes": 10}),
    "tiny-cyclegan": lambda: translation_raw("cyclegan"),
    "tiny-spade": lambda: translation_raw("spade"),
}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """{name: model folder} for TINY_MODELS, random weights, shared by every test of the session."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {name: tiny_model_folder(root, make(), name) for name, make in TINY_MODELS.items()}


# -- tiny configs from the registry ------------------------------------------------------------

def tiny_config(kind: str, name: str, **extra):
    """A seconds-long run config for task `kind` training model `name`, from the registry's tiny rows."""
    import copy

    from genforge import registry
    from genforge.config import validate
    task_row, model_row = registry.task_row(kind), registry.model_row(name)
    tiny = copy.deepcopy(task_row.tiny)
    raw = {"name": "tiny", "seed": 0, "data": tiny.get("data", {}),
           "model": {"name": name, **model_row.tiny, **tiny.get("model", {})},
           "task": {"kind": kind, **tiny.get("task", {})},
           "train": {"steps": 2, "threads": 1, "device": "cpu", **tiny.get("train", {})}, **extra}
    return validate(raw)


def random_folder(root: Path, kind: str, name: str, **model) -> Path:
    """A model folder with random weights for task `kind` and network `name` (registry tiny sizes;
    `model` overrides network keys), without training."""
    raw = tiny_config(kind, name).model_dump(mode="json")
    raw["model"].update(model)
    suffix = "".join(f"-{k}-{v}" for k, v in model.items())
    return tiny_model_folder(root, raw, f"{kind}-{name}{suffix}")


# -- tiny clips --------------------------------------------------------------------------------

def frame(k: int, w: int = 64, h: int = 48):
    """A gradient with a square moving 3 pixels right and 2 down a frame."""
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], axis=2).astype(np.uint8)
    x, y = (3 * k) % (w - 12), (2 * k) % (h - 12)
    image[y:y + 12, x:x + 12] = (250, 40, 40)
    return image


def make_clip(path: Path, n: int = 12, *, fps=10, audio: bool = False, w: int = 64, h: int = 48,
              rotation: int = 0, options=None, scene=None) -> Path:
    """A tiny H.264 clip made with PyAV: n frames of scene(k, w, h) (default `frame`), with an aac sine
    track when `audio`; nothing is downloaded."""
    import av
    scene = scene or frame
    with av.open(str(path), "w", options=options or {}) as out:
        v = out.add_stream("libx264", rate=Fraction(fps))
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        if rotation:
            v.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=16000) if audio else None
        for k in range(n):
            f = av.VideoFrame.from_ndarray(scene(k, w, h), format="rgb24")
            f.pts = k
            out.mux(v.encode(f))
        out.mux(v.encode())
        if a is not None:
            t = np.arange(int(16000 * n / Fraction(fps))) / 16000
            sine = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for i in range(0, sine.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(sine[:, i:i + 1024]), format="fltp",
                                                layout="mono")
                af.sample_rate, af.pts = 16000, i
                out.mux(a.encode(af))
            out.mux(a.encode())
    return path
