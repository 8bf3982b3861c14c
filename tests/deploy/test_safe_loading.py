"""Loading never executes code from a file.

A pickle can carry code: unpickling it calls whatever its `__reduce__` names. Files crafted that
way (the call would create a marker file) are put wherever genforge reads a checkpoint or weights
file: a run directory (export, sample, upscale, genforge.load, train --resume), a checkpoint
passed directly, and `upscale --weights`. Each must be refused with one line naming the file, and
the marker must never appear."""

import builtins
import os
import pickle

import numpy as np
import pytest
import torch
import yaml

import genforge
from genforge.data.io import write_image
from genforge.deploy.thirdparty import load_weights
from genforge.errors import UserError
from genforge.train import train
from tests.conftest import run_cli, tiny_raw


class WritesMarker:
    """Unpickled without restriction, this calls open(marker, "w")."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


class RunsShell:
    """Unpickled without restriction, this runs a shell command that creates the marker."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def evil_checkpoint(payload) -> dict:
    """Shaped like a genforge checkpoint, so only the payload can make loading fail."""
    return {"step": 1, "task": {}, "rng": {}, "export": {"weight": torch.zeros(2)}, "config": payload}


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    root = tmp_path_factory.mktemp("evil")
    marker = root / "marker"
    run = root / "runs" / "x"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(tiny_raw()))
    torch.save(evil_checkpoint(WritesMarker(marker)), run / "checkpoints" / "step_00000001.pt")
    torch.save(evil_checkpoint(RunsShell(marker)), root / "direct.pt")
    torch.save({"params_ema": WritesMarker(marker)}, root / "weights.pth")
    with open(root / "weights_p2.pt", "wb") as f:  # plain pickle, not torch.save
        pickle.dump({"params": RunsShell(marker)}, f, protocol=2)
    with open(root / "weights_p5.ckpt", "wb") as f:
        pickle.dump({"state_dict": WritesMarker(marker)}, f, protocol=5)
    image = root / "in.png"
    write_image(image, np.zeros((8, 8, 3), np.uint8))
    return {"root": root, "marker": marker, "run": run, "image": image}


def assert_refused(res, path, marker):
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("error: ") and str(path) in lines[0] and "not a plain weights file" in lines[0]
    assert not marker.exists()


def test_the_payload_is_live(tmp_path):
    """The files used below really run code when unpickled without restriction."""
    marker = tmp_path / "sanity"
    torch.save(evil_checkpoint(WritesMarker(marker)), tmp_path / "a.pt")
    torch.load(tmp_path / "a.pt", weights_only=False)  # noqa: S614  (on purpose, on our own file)
    assert marker.exists()
    marker.unlink()
    pickle.loads(pickle.dumps(RunsShell(marker), protocol=2))  # noqa: S301
    assert marker.exists()


def test_run_directory_is_refused_by_every_command(evil, tmp_path):
    run, marker = evil["run"], evil["marker"]
    ckpt = run / "checkpoints" / "step_00000001.pt"
    for args in (("export", run, "-o", tmp_path / "folder"),
                 ("export", run, "-o", tmp_path / "m.onnx", "--format", "onnx"),
                 ("sample", run, "-n", 2, "-o", tmp_path / "g.png"),
                 ("upscale", run, evil["image"], "-o", tmp_path / "up", "--no-progress"),
                 ("train", "--resume", run, "--no-progress")):
        res = run_cli(*args)
        assert_refused(res, ckpt, marker)
        assert "refusing to unpickle code" in res.stderr and "io.open" in res.stderr
    assert not (tmp_path / "folder").exists() and not (tmp_path / "m.onnx").exists()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml"]  # resume wrote nothing


def test_checkpoint_file_is_refused(evil, tmp_path):
    path = evil["root"] / "direct.pt"
    assert_refused(run_cli("export", path, "-o", tmp_path / "folder"), path, evil["marker"])


def test_python_api_refuses(evil):
    for target in (evil["run"], evil["root"] / "direct.pt"):
        with pytest.raises(UserError, match="refusing to unpickle code"):
            genforge.load(str(target), device="cpu")
    with pytest.raises(UserError, match="refusing to unpickle code"):
        train(resume=str(evil["run"]), progress=False)
    for name in ("weights.pth", "weights_p2.pt", "weights_p5.ckpt"):
        with pytest.raises(UserError, match="not a plain weights file") as err:
            load_weights(evil["root"] / name, "cpu")
        assert str(evil["root"] / name) in str(err.value)
    assert not evil["marker"].exists()


@pytest.mark.parametrize("name", ["weights.pth", "weights_p2.pt", "weights_p5.ckpt"])
def test_weights_file_is_refused(evil, tmp_path, name):
    path = evil["root"] / name
    res = run_cli("upscale", "--weights", path, evil["image"], "-o", tmp_path / "up", "--no-progress")
    assert_refused(res, path, evil["marker"])
    assert not (tmp_path / "up").exists()


def test_a_normal_checkpoint_still_loads(tmp_path):
    cfg = tmp_path / "gan.yaml"
    cfg.write_text(yaml.safe_dump(tiny_raw()))
    run = train(str(cfg), run_dir=str(tmp_path / "run"), progress=False)
    images = genforge.load(str(run), device="cpu").generate(2)
    assert images.shape[0] == 2 and torch.isfinite(images).all()
    assert train(resume=str(run), overrides=["train.steps=9"], progress=False) == run
    assert (run / "checkpoints" / "step_00000009.pt").is_file()
    res = run_cli("export", run, "-o", tmp_path / "folder")
    assert res.returncode == 0, res.stderr
