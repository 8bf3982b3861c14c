import os
import subprocess
import sys

from genforge.engine import checkpoint
from tests.conftest import tiny_raw


def torchrun_train(config, run, port: int) -> subprocess.CompletedProcess:
    """`genforge train` in 2 CPU processes under torchrun; asserts it succeeded."""
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(port), "-m", "genforge", "train", str(config), "--run-dir", str(run),
                          "--no-progress"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_torchrun_two_cpu_processes(tmp_path, write_config):
    cfg = write_config(tiny_raw(train={"steps": 4, "checkpoint_every": 2}))
    run = tmp_path / "run"
    res = torchrun_train(cfg, run, 29533)
    assert [p.name for p in checkpoint.all_checkpoints(run)] == ["step_00000002.pt", "step_00000004.pt"]
    state = checkpoint.load(checkpoint.latest(run))
    assert state["step"] == 4
    # rank 0 alone logs: one line per logged step
    lines = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"kind": "train"' in line]
    assert len(lines) == 2
    # gradients are averaged over both processes: images/s counts the two shards
    assert res.stdout.count("run directory:") == 1


def test_two_processes_average_like_one_process_with_both_batches(tmp_path):
    """2 processes with batch B and averaged gradients = 1 process whose batch is both ranks'
    batches (2B, mean loss): the same weights up to float summation order. LapSRN has no batch
    norm and no noise, so nothing but the averaging can differ."""
    import torch
    import yaml

    from genforge.config import validate
    from genforge.engine.distributed import Dist
    from genforge.engine.fit import fit, seed_everything
    from genforge.registry import build_task, task_row
    from tests.conftest import tiny_config
    raw = tiny_config("superres", "lapsrn").model_dump(mode="json")
    raw["task"]["val_images"] = 0
    raw["train"].update(steps=4, checkpoint_every=4, batch_size=2, log_every=2)
    path = tmp_path / "sr.yaml"
    path.write_text(yaml.safe_dump(raw))
    run = tmp_path / "two"
    torchrun_train(path, run, 29534)

    cfg = validate(raw)
    seed_everything(cfg.seed)  # rank 0's start, which the ranks share (broadcast); train() builds in this order
    shards = [task_row("superres").task.setup(cfg, Dist(rank=r, world_size=2))[0] for r in (0, 1)]
    task = build_task(cfg, torch.device("cpu"))

    class Both:
        def batch(self, step):
            parts = [s.batch(step) for s in shards]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    fit(task, Both(), cfg.train, run_dir=None, progress=False)
    two = checkpoint.load(checkpoint.latest(run))["task"]["networks"]["g"]
    for key, value in task.networks["g"].state_dict().items():
        assert torch.allclose(value, two[key], atol=1e-5, rtol=1e-4), key
