"""Gradient averaging across processes: genforge's hand-written flat all-reduce after backward
(engine/distributed.py) against torch's DistributedDataParallel (bucketed all-reduce overlapping
backward), on the same network, data and optimizer, side by side in one process group.

    python bench/ddp.py            # 2 processes (gloo on CPU, nccl on GPUs); writes bench/results/ddp.md

Both variants run alternately in rounds, so machine noise hits them alike; medians of the step time
are quoted, with the all-reduce alone timed for the hand-written path."""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "ddp.md"
ROUNDS, STEPS, BATCH, PATCH = 5, 8, 16, 48


def worker() -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from genforge.engine import distributed
    from genforge.models.isrnet import ISRNet, ISRNetConfig
    d = distributed.init("auto")
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // d.world_size))
    torch.manual_seed(0)
    plain = ISRNet(ISRNetConfig(scale=2, channels=1)).to(d.device)
    distributed.broadcast_module(plain)
    wrapped = DistributedDataParallel(ISRNet(ISRNetConfig(scale=2, channels=1)).to(d.device))
    wrapped.module.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(100 + d.rank)
    lr = torch.rand(BATCH, 1, PATCH // 2, PATCH // 2, generator=g).to(d.device)
    hr = torch.rand(BATCH, 1, PATCH, PATCH, generator=g).to(d.device)
    opts = {"hand-written": torch.optim.Adam(plain.parameters(), 1e-4),
            "DDP": torch.optim.Adam(wrapped.parameters(), 1e-4)}
    times = {k: [] for k in opts}
    reduce_times = []

    def sync():
        if d.device.type == "cuda":
            torch.cuda.synchronize()

    for round_ in range(ROUNDS + 1):  # round 0 warms up
        for name, opt in opts.items():
            net = plain if name == "hand-written" else wrapped
            for _ in range(STEPS):
                sync()
                start = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                (net(lr) - hr).abs().mean().backward()
                if name == "hand-written":
                    sync()
                    t0 = time.perf_counter()
                    distributed.all_reduce_grads(list(plain.parameters()))
                    sync()
                    if round_:
                        reduce_times.append(time.perf_counter() - t0)
                opt.step()
                sync()
                if round_:
                    times[name].append(time.perf_counter() - start)
    same = all(torch.allclose(a, b, atol=1e-5) for a, b in zip(plain.parameters(), wrapped.module.parameters()))
    if d.is_main:
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        params = sum(p.numel() for p in plain.parameters())
        lines = ["# Gradient averaging: hand-written all-reduce vs DistributedDataParallel", "",
                 f"{d.world_size} processes on {d.device.type} ({dist.get_backend()}), ISRNet x2 luma "
                 f"({params:,} parameters), batch {BATCH} x {PATCH}px per process, Adam; median of "
                 f"{ROUNDS} x {STEPS} steps each, the variants alternating round by round.", "",
                 "| variant | step (ms) | all-reduce alone (ms) |", "|---|---|---|",
                 f"| hand-written flat all-reduce after backward | {med['hand-written']:.1f} | "
                 f"{statistics.median(reduce_times) * 1000:.1f} |",
                 f"| DistributedDataParallel (bucketed, overlapping backward) | {med['DDP']:.1f} | (overlapped) |",
                 "", f"DDP / hand-written step time: {med['DDP'] / med['hand-written']:.3f}; weights after "
                 f"the same steps {'equal' if same else 'NOT equal'} (tolerance 1e-5)."]
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    distributed.shutdown()


def main() -> int:
    if "--worker" in sys.argv:
        worker()
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", os.environ.get("NPROC", "2"),
           "--master_port", "29541", __file__, "--worker"]
    return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
