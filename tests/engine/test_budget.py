"""train.max_minutes: the wall-clock budget, schedules that follow it, resume, and the record of
which limit ended a run (event log, checkpoint, model card)."""

import json

import pytest
import torch

from genforge.engine import budget, checkpoint
from genforge.schema import Optim
from genforge.tasks.base import make_scheduler
from genforge.train import train
from tests.conftest import tiny_raw


class FakeTime:
    """A clock that advances `tick` seconds every time it is read."""

    def __init__(self, tick: float):
        self.now, self.tick = 1000.0, tick

    def monotonic(self) -> float:
        self.now += self.tick
        return self.now


def scheduler(schedule="linear", decay_start=0.5, steps=100):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return opt, make_scheduler(opt, Optim(schedule=schedule, decay_start=decay_start), steps)


def test_schedule_follows_whichever_limit_is_further():
    _, sched = scheduler()
    factor = sched.lr_lambdas[0]
    assert [factor(s) for s in (0, 50, 75, 100)] == [1.0, 1.0, 0.5, 0.0]  # steps alone, as before
    used = {"fraction": 0.75}
    sched.follow_clock(lambda: used["fraction"])
    assert factor(0) == pytest.approx(0.5)  # 3/4 of the time gone: half-way down the decay
    assert factor(90) == pytest.approx(0.2)  # the steps are further along here
    used["fraction"] = 1.0
    assert factor(10) == 0.0
    _, cosine = scheduler("cosine", decay_start=0.0)
    cosine.follow_clock(lambda: 0.5)
    assert cosine.lr_lambdas[0](0) == pytest.approx(0.5)
    _, constant = scheduler("constant")
    constant.follow_clock(lambda: 1.0)
    assert constant.lr_lambdas[0](99) == 1.0


def test_schedule_state_has_no_clock_and_loads():
    opt, sched = scheduler()
    sched.follow_clock(lambda: 0.3)
    for _ in range(3):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert "_clock" not in state and state["last_epoch"] == 3
    torch.save(state, buf := __import__("io").BytesIO())
    buf.seek(0)
    _, other = scheduler()
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.last_epoch == 3


def test_wall_clock(monkeypatch):
    monkeypatch.setattr(budget, "time", FakeTime(30.0))
    clock = budget.WallClock(max_minutes=2, elapsed_s=60.0)
    assert clock.fraction() == 0.5 and not clock.out_of_time()

    class One:
        enabled = False
    clock.update(1, 1, One())  # 60 s before + 30 s
    assert clock.fraction() == pytest.approx(0.75)
    clock.update(2, 1, One())
    assert clock.out_of_time() and clock.fraction() == 1.0
    assert budget.WallClock(None).fraction() == 0.0 and not budget.WallClock(None).out_of_time()


def records(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_budget_ends_the_run_and_is_kept_across_resume(tmp_path, write_config, monkeypatch):
    from genforge.deploy.pretrained import export_folder
    monkeypatch.setattr(budget, "time", FakeTime(1.0))  # every clock read: 1 s later
    raw = tiny_raw(train={"steps": 200, "max_minutes": 0.5, "checkpoint_every": 100},
                   task={"g_optim": {"schedule": "linear", "decay_start": 0.5}})
    run = train(str(write_config(raw)), run_dir=str(tmp_path / "run"), progress=False)
    end = [r for r in records(run) if r.get("kind") == "end"]
    assert len(end) == 1 and end[0]["ended_by"] == "max_minutes" and 0 < end[0]["step"] < 200
    assert any("ended by train.max_minutes (0.5 min)" in r.get("message", "") for r in records(run))
    last = checkpoint.load(checkpoint.latest(run))
    assert last["step"] == end[0]["step"] and last["ended_by"] == "max_minutes" and last["elapsed_s"] >= 30
    lr = [r["lr_g"] for r in records(run) if r.get("kind") == "train"]
    assert lr[0] == pytest.approx(2e-4) and lr[-1] < 0.2 * lr[0]  # the decay followed the clock, not the steps
    card = (export_folder(str(run), tmp_path / "model") / "README.md").read_text()
    assert "ended by: train.max_minutes (0.5 min)" in card
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    assert meta["training"]["ended_by"] == "max_minutes"

    # a resume keeps the time already spent: the same budget is spent, a larger one continues
    first = end[0]["step"]
    train(resume=str(run), progress=False)
    assert checkpoint.load(checkpoint.latest(run))["step"] == first
    train(resume=str(run), overrides=["train.max_minutes=1"], progress=False)
    last = checkpoint.load(checkpoint.latest(run))
    assert first < last["step"] < 200 and last["elapsed_s"] >= 60 and last["ended_by"] == "max_minutes"


def test_run_ended_by_steps_says_so(tmp_path, write_config):
    run = train(str(write_config(tiny_raw(train={"max_minutes": 60}))), run_dir=str(tmp_path / "run"),
                progress=False)
    end = [r for r in records(run) if r.get("kind") == "end"]
    assert end[0]["ended_by"] == "steps" and end[0]["step"] == 6
    assert checkpoint.load(checkpoint.latest(run))["ended_by"] == "steps"


def test_bad_budget_is_one_config_line(tmp_path, write_config):
    from tests.conftest import run_cli
    res = run_cli("train", write_config(tiny_raw(train={"max_minutes": -1})), "--runs", tmp_path)
    assert res.returncode == 2 and res.stderr.strip().startswith("error: config error: train.max_minutes:")
    assert "Traceback" not in res.stderr
