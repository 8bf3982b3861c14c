import json
import os
import signal

import pytest

from genforge.engine import checkpoint
from genforge.errors import ConfigError, UserError
from genforge.train import train
from tests.conftest import assert_same_state, run_cli, straight_and_resumed, tiny_raw, weights


def test_gan_run_writes_everything(tmp_path, write_config):
    out = train(str(write_config(tiny_raw())), run_dir=str(tmp_path / "run"), progress=False)
    assert (out / "config.yaml").is_file()
    names = [p.name for p in checkpoint.all_checkpoints(out)]
    assert names == ["step_00000003.pt", "step_00000006.pt"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in records if r.get("kind") == "train"]
    assert [r["step"] for r in train_rows] == [2, 4, 6]
    assert all(r["images_per_s"] > 0 and "loss_d" in r and "loss_g" in r for r in train_rows)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    assert any((out / "tb").iterdir())
    assert not list(out.rglob(".tmp-*"))


def test_keep_last(tmp_path, write_config):
    raw = tiny_raw(train={"steps": 5, "checkpoint_every": 1, "keep_last": 2})
    out = train(str(write_config(raw)), run_dir=str(tmp_path / "run"), progress=False)
    assert [p.name for p in checkpoint.all_checkpoints(out)] == ["step_00000004.pt", "step_00000005.pt"]


@pytest.mark.parametrize("kind, task", [
    ("gan", {"loss": "wgan-gp", "n_critic": 2, "g_optim": {"schedule": "cosine"}}),
    ("gan", {"loss": "hinge", "ema_decay": 0.5}),
    ("vae", {}),
])
def test_interrupt_and_resume_is_exact(tmp_path, write_config, kind, task):
    raw = tiny_raw(kind, task=task, train={"steps": 7, "checkpoint_every": 100, "device": "cpu"},
                   data={"augment": {"hflip": True, "translate": 0.1, "noise": 0.05}})
    if kind == "gan" and task["loss"] == "hinge":
        raw["model"]["num_classes"] = 10
    straight, resumed = straight_and_resumed(str(write_config(raw)), tmp_path, stop_at=3)
    assert_same_state(weights(straight), weights(resumed))


def test_nonfinite_steps_are_skipped_then_restored(tmp_path, write_config, monkeypatch):
    from genforge.tasks.gan import GANTask
    original = GANTask.training_step

    def poisoned(self, batch, step):
        if 4 <= step < 12:  # eight bad steps in a row
            batch = {**batch, "image": batch["image"] * float("nan")}
        return original(self, batch, step)

    monkeypatch.setattr(GANTask, "training_step", poisoned)
    raw = tiny_raw(train={"steps": 16, "checkpoint_every": 3, "max_nonfinite": 3, "log_every": 1})
    out = train(str(write_config(raw)), run_dir=str(tmp_path / "run"), progress=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = [r["message"] for r in records if r.get("kind") == "event"]
    assert sum("non-finite loss, step skipped" in e for e in events) == 8
    assert sum("restored" in e and "halved" in e for e in events) == 2
    lrs = [r["lr_g"] for r in records if r.get("kind") == "train"]
    assert lrs[0] == pytest.approx(2e-4) and lrs[-1] == pytest.approx(5e-5)
    for path in checkpoint.all_checkpoints(out):
        assert checkpoint.is_finite_state(checkpoint.load(path)["task"])


def test_resume_errors(tmp_path, write_config):
    with pytest.raises(UserError, match="not a run directory"):
        train(resume=str(tmp_path / "missing"), progress=False)
    out = train(str(write_config(tiny_raw())), run_dir=str(tmp_path / "run"), progress=False)
    other = tiny_raw()
    other["model"]["width"] = 16
    with pytest.raises(ConfigError, match="another model"):
        train(str(write_config(other, "other.yaml")), resume=str(out), progress=False)


def test_checkpoint_of_other_model_is_refused(tmp_path, write_config):
    out = train(str(write_config(tiny_raw())), run_dir=str(tmp_path / "run"), progress=False)
    # tamper: the saved config now claims a wider network than the checkpoint holds
    text = (out / "config.yaml").read_text().replace("width: 8", "width: 16")
    (out / "config.yaml").write_text(text)
    with pytest.raises(UserError, match="checkpoint does not fit this model"):
        train(None, ["train.steps=9"], resume=str(out), progress=False)


def test_existing_run_dir_is_not_overwritten(tmp_path, write_config):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="exists and is not empty"):
        train(str(write_config(tiny_raw())), run_dir=str(tmp_path / "run"), progress=False)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]


def test_sigint_from_outside_checkpoints_and_exits(tmp_path, write_config):
    import subprocess
    import sys
    import time
    raw = tiny_raw(train={"steps": 100000, "checkpoint_every": 100000, "log_every": 1})
    cfg = write_config(raw)
    proc = subprocess.Popen([sys.executable, "-m", "genforge", "train", str(cfg), "--run-dir",
                             str(tmp_path / "run"), "--no-progress"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("interrupted at step") == 1 and "checkpoint written" in err
    assert len(checkpoint.all_checkpoints(tmp_path / "run")) == 1
    res = run_cli("train", "--resume", tmp_path / "run", "--set", "train.steps=" +
                  str(int(checkpoint.latest(tmp_path / "run").stem.split("_")[1]) + 2), "--no-progress")
    assert res.returncode == 0, res.stderr


def test_bad_input_leaves_nothing(tmp_path, write_config):
    runs = tmp_path / "runs"
    res = run_cli("train", write_config(tiny_raw()), "--set", "train.stepz=1", "--runs", runs)
    assert res.returncode == 2 and res.stderr.strip() == "error: config error: train.stepz: unknown key"
    res = run_cli("train", write_config(tiny_raw(data={"dataset": f"folder:{tmp_path / 'nothing'}"})),
                  "--runs", runs)
    assert res.returncode == 1 and "Traceback" not in res.stderr and "nothing" in res.stderr
    res = run_cli("train", "--resume", tmp_path / "nope")
    assert res.returncode == 1 and "not a run directory" in res.stderr
    assert not runs.exists()
