"""The GPU path end to end (issue 11), on one CUDA machine in under 10 minutes: what the CPU suite
cannot show.

    python bench/gpu_smoke.py [--steps 100] [--batch-size 16] [--skip-tests]

1. Every registered (task, model) pair trains STEPS steps on CUDA from its tiny test config, in
   fp32 and in bf16, and then resumes for STEPS / 2 more; one extra run adds channels_last and
   torch.compile. Images/s is timed with CUDA events from step WARMUP to the last step (the GPU's
   own timeline, so nothing is synchronised to time it); host syncs per step are counted over
   the same steps twice: the warnings of torch.cuda.set_sync_debug_mode("warn") (every sync
   torch performs, the engine's or not) and genforge.engine.syncs' counter where the engine
   has one (the syncs the engine means to make).
2. Peak GPU memory (torch.cuda.max_memory_allocated) and time of a 4000x3000 x2 upscale with
   isrnet-x2: the whole image, --tile auto, --tile 512, and auto with --half.
3. With more than one GPU, a torchrun over all of them.
4. The engine tests (resume, torchrun), on this machine, with its GPU visible.

Prints a Markdown table and writes bench/results/gpu_smoke.md. Without CUDA it stops at once
(exit code 2): everything here is about the GPU."""

import argparse
import copy
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from common import RESULTS, ROOT  # noqa: E402  (path, OpenMP first)

import torch  # noqa: E402

if __name__ == "__main__" and not torch.cuda.is_available():
    print("no CUDA device: this script checks the GPU path", file=sys.stderr)
    sys.exit(2)

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from genforge import registry  # noqa: E402
from genforge.config import validate  # noqa: E402
from genforge.engine import checkpoint  # noqa: E402
from genforge.errors import ConfigError, UserError  # noqa: E402

try:  # the engine's own sync counter, where the engine has one
    from genforge.engine import syncs as engine_syncs  # noqa: E402
except ImportError:
    engine_syncs = None

WARMUP = 10  # steps before timing starts: cuDNN's algorithm search, the first allocations, compilation
BUDGET_S = 540  # stop starting new sections after this: the whole script must stay under 10 minutes
NEW_KEYS = ("precision", "channels_last", "compile")  # the engine's new train.* keys (issue 11)
SYNC_WARNING = "synchronizing"  # in the text of torch's sync-debug warning


def tiny_raw(kind: str, name: str, steps: int, batch_size: int, **train) -> dict:
    """The registry's tiny test config of a pair, on CUDA, as the registry tests build it."""
    task_row, model_row = registry.task_row(kind), registry.model_row(name)
    tiny = copy.deepcopy(task_row.tiny)
    return {"name": f"smoke-{kind}-{name}", "seed": 0, "data": tiny.get("data", {}),
            "model": {"name": name, **model_row.tiny, **tiny.get("model", {})},
            "task": {"kind": kind, **tiny.get("task", {})},
            "train": {**tiny.get("train", {}), "steps": steps, "batch_size": batch_size, "device": "cuda",
                      "threads": 4, "checkpoint_every": steps, "log_every": 50, "features": "none", **train}}


def accepted(raw: dict) -> tuple[dict, str]:
    """The config, and a note when this engine's schema refuses the new train keys (they are being
    added with issue 11): then they are dropped, and the row says so instead of failing."""
    try:
        validate(raw)
        return raw, ""
    except ConfigError as err:
        if not any(k in str(err) for k in NEW_KEYS):
            raise
        dropped = copy.deepcopy(raw)
        for key in NEW_KEYS:
            dropped["train"].pop(key, None)
        validate(dropped)
        return dropped, f"schema refused train.{'/'.join(NEW_KEYS)}: ran fp32 eager ({str(err)[:80]})"


class Probe:
    """A fit() callback: CUDA events and sync counts at step WARMUP and at the last step; sync-debug
    mode 'warn' in between (it warns on every sync, so it is off outside the measured steps)."""

    def __init__(self, last: int, recorded: list):
        self.last, self.recorded = last, recorded
        self.events, self.warnings, self.counter = [], [], []

    def on_start(self, step, task, logger):
        pass

    def on_step(self, step, task, logger):
        if step not in (WARMUP, self.last):
            return
        if step == self.last:
            torch.cuda.set_sync_debug_mode(0)
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        self.events.append(event)
        self.warnings.append(sum(SYNC_WARNING in str(w.message) for w in self.recorded))
        self.counter.append(engine_syncs.count() if engine_syncs else 0)
        if step == WARMUP:
            torch.cuda.set_sync_debug_mode("warn")

    def on_end(self, step, task, logger):
        torch.cuda.set_sync_debug_mode(0)


def train_once(raw: dict, root: Path, steps: int, label: str) -> dict:
    """Train, time and count; then resume to 1.5 x steps. One row of the table."""
    from genforge.train import train
    raw, note = accepted(raw)
    cfg_file = root / f"{raw['name']}-{label}.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    run = root / cfg_file.stem
    torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        probe = Probe(steps, recorded)
        t0 = time.perf_counter()
        train(str(cfg_file), [], run_dir=str(run), progress=False, callbacks=[probe])
        wall = time.perf_counter() - t0
    torch.cuda.synchronize()
    measured = steps - WARMUP
    seconds = probe.events[0].elapsed_time(probe.events[1]) / 1000
    row = {"images_s": measured * raw["train"]["batch_size"] / seconds, "wall_s": wall,
           "syncs_debug": (probe.warnings[1] - probe.warnings[0]) / measured,
           "syncs_engine": (probe.counter[1] - probe.counter[0]) / measured if engine_syncs else None,
           "peak_mb": torch.cuda.max_memory_allocated() / 2 ** 20, "note": note}
    train(None, [f"train.steps={steps + steps // 2}"], resume=str(run), progress=False)
    row["resumed"] = int(checkpoint.load(checkpoint.latest(run))["step"]) == steps + steps // 2
    return row


def train_all(args, root: Path, start: float) -> list[tuple[str, str, dict | str]]:
    rows = []
    runs = [(kind, name, {"precision": p}) for kind, name in registry.trainable_pairs() for p in ("fp32", "bf16")]
    runs.append(("superres", "isrnet", {"precision": "bf16", "channels_last": True, "compile": True}))
    for kind, name, extra in runs:
        label = "+".join(f"{k}" if v is True else str(v) for k, v in extra.items())
        if time.perf_counter() - start > BUDGET_S / 2:
            rows.append((f"{kind}/{name}", label, "skipped: past half the time budget"))
            continue
        try:
            raw = tiny_raw(kind, name, args.steps, args.batch_size, **extra)
            rows.append((f"{kind}/{name}", label, train_once(raw, root, args.steps, label)))
        except Exception as err:  # noqa: BLE001  (one failing family must not hide the others' figures)
            rows.append((f"{kind}/{name}", label, f"FAILED: {type(err).__name__}: {str(err)[:160]}"))
        print(f"  {kind}/{name} {label}: {rows[-1][2] if isinstance(rows[-1][2], str) else 'ok'}", flush=True)
    return rows


def upscale_memory(size=(3000, 4000)) -> list[tuple[str, str]]:
    """Peak GPU memory of a 4000x3000 x2 upscale through the Upscaler, as `genforge upscale` runs it."""
    from upscale_memory import photo_like

    from genforge.deploy.infer import AUTO
    from genforge.deploy.upscaler import Upscaler
    image = photo_like(*size)
    out, reference = [], None
    for label, tile, half in (("whole image (--tile 0)", 0, False), ("--tile auto", AUTO, False),
                              ("--tile 512", 512, False), ("--tile auto --half", AUTO, True)):
        up = Upscaler("isrnet-x2", device="cuda")
        if half:
            up.use_half()
        if tile == AUTO:  # measures the network once (cached), before the peak counter is reset
            label += f" (chose {up.tile_size(AUTO, up._run, 3, up.default_overlap, key=3)})"
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        try:
            result = up.upscale_array(image, tile=tile)
        except UserError as err:  # out of memory, reported by run_tiled
            out.append((label, f"{err}"))
            continue
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
        diff = "" if reference is None else \
            f", max diff vs whole {int(np.abs(result.astype(int) - reference).max())} levels"
        reference = result.astype(int) if reference is None else reference
        out.append((label, f"{peak:,.0f} MB peak, {seconds:.1f} s{diff}"))
        del up
    return out


def torchrun_all_gpus(root: Path) -> str:
    n = torch.cuda.device_count()
    if n < 2:
        return f"skipped: {n} GPU"
    raw, _ = accepted(tiny_raw("gan", "dcgan", 40, 16))
    cfg = root / "torchrun.yaml"
    cfg.write_text(yaml.safe_dump({**raw, "train": {**raw["train"], "checkpoint_every": 20}}))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                          "-m", "genforge", "train", str(cfg), "--run-dir", str(root / "torchrun"), "--no-progress"],
                         capture_output=True, text=True, timeout=240, cwd=ROOT)
    if res.returncode:
        return f"FAILED ({n} processes): {res.stderr.strip().splitlines()[-1][:200] if res.stderr.strip() else '?'}"
    step = checkpoint.load(checkpoint.latest(root / "torchrun"))["step"]
    return f"{n} processes, one per GPU: step {step} reached in {time.perf_counter() - t0:.0f} s"


def engine_tests(timeout: float) -> str:
    try:
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/engine"],
                             capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return f"FAILED: not done within {timeout:.0f} s"
    lines = res.stdout.strip().splitlines()
    return f"{'passed' if res.returncode == 0 else 'FAILED'}: {lines[-1] if lines else res.stderr[-200:]}"


def fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report(trained, upscales, torchrun: str, tests: str, args) -> str:
    props = torch.cuda.get_device_properties(0)
    lines = ["# GPU smoke check", "",
             f"{props.name} ({props.total_memory / 2 ** 30:.0f} GiB) x {torch.cuda.device_count()}, torch "
             f"{torch.__version__}, CUDA {torch.version.cuda}; {args.steps} steps per run, batch {args.batch_size}, "
             f"timed from step {WARMUP}.", "",
             "| family/model | precision | images/s | syncs/step (debug mode) | syncs/step (engine counter) | "
             "peak MB | resumed | note |", "|---|---|---|---|---|---|---|---|"]
    for pair, label, row in trained:
        if isinstance(row, str):
            lines.append(f"| {pair} | {label} | | | | | | {row} |")
            continue
        lines.append(f"| {pair} | {label} | {row['images_s']:,.0f} | {row['syncs_debug']:.2f} | "
                     f"{fmt(row['syncs_engine'], '.2f')} | {row['peak_mb']:,.0f} | "
                     f"{'yes' if row['resumed'] else 'NO'} | {row['note']} |")
    lines += ["", "| 4000x3000 x2 upscale, isrnet-x2 | peak GPU memory, time |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in upscales]
    lines += ["", f"- torchrun on all GPUs: {torchrun}", f"- pytest tests/engine: {tests}", ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--skip-tests", action="store_true", help="leave out pytest tests/engine")
    args = p.parse_args()
    if args.steps <= WARMUP:
        p.error(f"--steps must exceed the {WARMUP} warm-up steps")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("training every family ...", flush=True)
        trained = train_all(args, root, start)
        print("upscaling 4000x3000 ...", flush=True)
        upscales = upscale_memory()
        torchrun = torchrun_all_gpus(root)
    left = BUDGET_S + 50 - (time.perf_counter() - start)
    tests = "skipped (--skip-tests)" if args.skip_tests else \
        ("skipped: no time left" if left < 60 else engine_tests(left))
    text = report(trained, upscales, torchrun, tests, args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu_smoke.md").write_text(text)
    print(text)
    print(f"wrote {RESULTS / 'gpu_smoke.md'} ({time.perf_counter() - start:.0f} s)")
    failed = any(isinstance(r, str) and r.startswith("FAILED") or isinstance(r, dict) and not r["resumed"]
                 for _, _, r in trained) or "FAILED" in torchrun + tests
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
