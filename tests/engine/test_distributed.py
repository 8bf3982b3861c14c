import os
import subprocess
import sys

from genforge.engine import checkpoint
from tests.conftest import tiny_raw


def test_torchrun_two_cpu_processes(tmp_path, write_config):
    cfg = write_config(tiny_raw(train={"steps": 4, "checkpoint_every": 2}))
    run = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29533", "-m", "genforge", "train", str(cfg), "--run-dir", str(run),
                          "--no-progress"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert [p.name for p in checkpoint.all_checkpoints(run)] == ["step_00000002.pt", "step_00000004.pt"]
    state = checkpoint.load(checkpoint.latest(run))
    assert state["step"] == 4
    # rank 0 alone logs: one line per logged step
    lines = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"kind": "train"' in line]
    assert len(lines) == 2
    # gradients are averaged over both processes: images/s counts the two shards
    assert res.stdout.count("run directory:") == 1
