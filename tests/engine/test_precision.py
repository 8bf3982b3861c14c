"""The GPU-path options, checked for correctness on the CPU with tiny sizes (speed is for
bench/gpu_smoke.py): train.precision bf16/fp16 (autocast, a GradScaler per optimizer in the
checkpoint), channels_last, compile, prefetching, and the host syncs a step makes."""

import pytest
import torch
import yaml

from genforge.config import load_config
from genforge.engine import syncs
from genforge.engine.batches import Prefetcher
from genforge.engine.callbacks import Callback
from genforge.registry import build_task
from genforge.train import train
from tests.conftest import assert_same_state, straight_and_resumed, tiny_config, weights


def write(tmp_path, kind, name, **train_options):
    cfg = tiny_config(kind, name)
    raw = cfg.model_dump(mode="json")
    raw["train"].update({"steps": 4, "checkpoint_every": 2, "log_every": 2, "eval_every": 0, "sample_every": 100,
                         **train_options})
    path = tmp_path / f"{kind}-{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def finite_and_moved(run, cfg_path):
    state = weights(run)["networks"]
    torch.manual_seed(0)  # train() seeds the same way before building the task
    fresh = build_task(load_config(cfg_path), torch.device("cpu")).state_dict()["networks"]
    moved = False
    for net, params in state.items():
        for key, value in params.items():
            if value.is_floating_point():
                assert torch.isfinite(value).all(), (net, key)
                moved |= not torch.equal(value, fresh[net][key])
    assert moved


@pytest.mark.parametrize("kind,name,extra", [
    ("gan", "dcgan", {"task.loss": "wgan-gp"}),   # the gradient penalty's double backward under autocast
    ("vae", "vae", {}),                            # binary cross-entropy runs in fp32
    ("superres", "lapsrn", {}),
    ("spade", "spade", {}),
])
def test_bf16_trains_finite_and_resumes_exactly(tmp_path, kind, name, extra):
    path = write(tmp_path, kind, name, precision="bf16")
    if extra:
        raw = yaml.safe_load(open(path))
        for key, value in extra.items():
            section, field = key.split(".")
            raw[section][field] = value
        open(path, "w").write(yaml.safe_dump(raw))
    straight, resumed = straight_and_resumed(path, tmp_path, stop_at=2)
    assert_same_state(weights(straight), weights(resumed))
    finite_and_moved(straight, path)


def test_fp16_keeps_a_grad_scaler_per_optimizer_in_the_checkpoint(tmp_path):
    path = write(tmp_path, "gan", "dcgan", precision="fp16")
    straight, resumed = straight_and_resumed(path, tmp_path, stop_at=2)
    state = weights(straight)
    assert set(state["scalers"]) == {"g", "d"} and state["scalers"]["d"]["scale"] > 0
    assert_same_state(state, weights(resumed))
    finite_and_moved(straight, path)


def test_fp16_overflow_is_the_scalers_not_a_skipped_step():
    cfg = tiny_config("superres", "isrnet")
    task = build_task(cfg, torch.device("cpu"))
    task.set_precision("fp16")
    before = task.scalers["g"].get_scale()
    # a finite loss whose gradient, times the initial scale 65536, overflows float32
    def loss():
        return sum(p.sum() for p in task.networks["g"].parameters()) * 1e34
    assert not task.optimize("g", loss())
    assert not task.skipped_step and task.scalers["g"].get_scale() < before
    assert not task.optimize("g", loss() * float("nan"))
    assert task.skipped_step  # a non-finite loss still counts for the guard


def test_channels_last_and_prefetch_give_the_same_run(tmp_path):
    plain = train(write(tmp_path, "superres", "isrnet", prefetch="off"), run_dir=str(tmp_path / "a"),
                  progress=False)
    other = train(write(tmp_path, "superres", "isrnet", prefetch="on", channels_last=True),
                  run_dir=str(tmp_path / "b"), progress=False)
    a, b = weights(plain)["networks"]["g"], weights(other)["networks"]["g"]
    for key in a:  # channels_last convolutions may sum in another order: equal to rounding
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_prefetcher_gives_the_batches_of_the_step():
    cfg = tiny_config("pix2pix", "unet")
    from genforge.engine.distributed import Dist
    batches, _, _ = build_task(cfg, torch.device("cpu")).setup(cfg, Dist())
    direct = [batches.batch(s) for s in (0, 1, 2, 7, 8)]
    ahead = Prefetcher(batches, torch.device("cpu"))
    try:
        for s, want in zip((0, 1, 2, 7, 8), direct):  # in order, then a jump
            got = ahead.batch(s)
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    finally:
        ahead.close()


def test_compile_trains(tmp_path):
    run = train(write(tmp_path, "superres", "lapsrn", compile=True, steps=2), run_dir=str(tmp_path / "c"),
                progress=False)
    assert all(torch.isfinite(v).all() for v in weights(run)["networks"]["g"].values())


class CountSyncs(Callback):
    def __init__(self):
        self.at = {}

    def on_step(self, step, task, logger):
        self.at[step] = syncs.count()


@pytest.mark.parametrize("kind,name,optimizer_steps", [("superres", "isrnet", 1), ("spade", "spade", 2),
                                                       ("gan", "dcgan", 2)])
def test_one_host_sync_per_optimizer_step(tmp_path, kind, name, optimizer_steps):
    """Between log steps a training step makes exactly one sync per optimizer step (the finite
    check); counted on the CPU through genforge.engine.syncs, which every sync point goes through."""
    counter = CountSyncs()
    train(write(tmp_path, kind, name, steps=7, log_every=100, checkpoint_every=100), run_dir=str(tmp_path / "r"),
          progress=False, callbacks=[counter])
    per_step = {s: counter.at[s] - counter.at[s - 1] for s in range(2, 7)}
    assert set(per_step.values()) == {optimizer_steps}, per_step
