"""Deployment benchmark: PyTorch eager against ONNX Runtime for every shipped model, then the HTTP
service under load.

1. Every shipped model (or those named by --models) whose task has an entry in KINDS is exported
   to ONNX (verified against PyTorch by the exporter) and run through the same inference wrapper
   twice: with the torch module and with the .onnx file. Latency is the median of N calls after one
   warm-up; the two runtimes alternate call by call, so a busy neighbour on the machine slows both
   alike. Throughput is output megapixels per second (super-resolution, translation) or images per
   second (generation). torch uses 2 threads, ONNX Runtime 2 intra-op threads (CPU provider).
2. `genforge serve --models isrnet-x2` in a child process, at its defaults and at the other
   SERVICE_CONFIGS, takes REQUESTS /v1/upscale calls of a 128x128 image with IN_FLIGHT of them in
   flight: answers by status (200, 503, other 5xx, 4xx), p50/p95 latency, throughput, and the
   server process's peak RSS.

Writes bench/results/deploy.md and the README section between <!-- bench:deploy --> markers.

    python bench/deploy.py            # the full run, about 5-10 minutes on 2 cores
    python bench/deploy.py --quick    # smoke run: small inputs, few calls, 40 requests (< 1 minute)
    python bench/deploy.py --quick --models /tmp/x/pix2pix-test   # a model folder not shipped yet
    python bench/deploy.py --service-only   # the load test alone: bench/results/deploy_service.md
"""

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

THREADS = 2
# before torch and onnxruntime are imported: torch's OpenMP pool and OnnxRunner's intra-op threads read it
os.environ["OMP_NUM_THREADS"] = str(THREADS)

from common import RESULTS, ROOT, write_readme_section  # noqa: E402  (path, OpenMP first)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genforge.data.io import decode_image, encode_image  # noqa: E402
from genforge.deploy.export import export_onnx  # noqa: E402
from genforge.deploy.infer import load  # noqa: E402
from genforge.deploy.loadtest import post_many, serve_process  # noqa: E402
from genforge.deploy.pretrained import list_models, read_source  # noqa: E402
from genforge.registry import family_of  # noqa: E402
from genforge.errors import UserError  # noqa: E402

SERVICE_MODEL = "isrnet-x2"


# -- what is measured per task kind ---------------------------------------------------------------

@dataclass
class Case:
    label: str
    call: Callable[[object], object]   # one inference call on a wrapper (torch- or ONNX-backed)
    work: float                        # units of `Kind.unit` produced by one call


@dataclass
class Kind:
    unit: str
    cases: Callable[[object, bool], list[Case]]   # (torch wrapper, quick) -> cases


def photo_like(channels: int, h: int, w: int) -> torch.Tensor:
    """C x H x W in [0, 1]: smooth gradients plus texture, so the network sees image-like input."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([(0.2 + 0.6 * xx) * (0.5 + 0.5 * yy), 0.5 + 0.4 * torch.sin(6 * xx + 3 * yy),
                        0.3 + 0.5 * yy][:channels])
    return (base + 0.05 * torch.randn(channels, h, w, generator=g)).clamp(0, 1)


def sr_cases(up, quick: bool) -> list[Case]:
    cases = []
    for side in (64, 128) if quick else (256, 1024):
        x = photo_like(up.channels, side, side)
        out = side * up.scale
        cases.append(Case(f"{side}x{side} -> {out}x{out}", lambda w, x=x: w.upscale_tensor(x), out * out / 1e6))
    return cases


def generation_cases(gen, quick: bool) -> list[Case]:
    return [Case(f"batch {n}", lambda w, n=n: w.generate(n, seed=0), n) for n in (1, 64)]


def translation_input(tr, side: int) -> np.ndarray:
    """What the model reads: an RGB photo, or for SPADE an 8x8 grid of class regions."""
    if tr.kind == "spade":
        yy, xx = np.mgrid[0:side, 0:side] * 8 // side
        return ((yy * 8 + xx) * 7 % tr.label_nc).astype(np.uint8)
    return (photo_like(3, side, side).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def translation_cases(tr, quick: bool) -> list[Case]:
    cases = []
    for side in (64, 128) if quick else (256, 1024):
        x = translation_input(tr, side)
        cases.append(Case(f"{side}x{side}", lambda w, x=x: w.translate_array(x), side * side / 1e6))
    return cases


# A new task kind is one entry here; models of kinds not listed are skipped with a note.
KINDS = {
    "super-resolution": Kind("MPix/s", sr_cases),
    "generation": Kind("images/s", generation_cases),
    "translation": Kind("MPix/s", translation_cases),
}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def compare(name: str, kind: Kind, torch_wrapper, ort_wrapper, quick: bool, budget: float) -> list[dict]:
    rows = []
    for case in kind.cases(torch_wrapper, quick):
        warm = max(timed(lambda c=case: c.call(torch_wrapper)), timed(lambda c=case: c.call(ort_wrapper)))
        runs = 2 if quick else int(min(25, max(2, budget / max(warm, 1e-6))))
        times = {"torch": [], "ort": []}
        for _ in range(runs):  # interleaved: drift on a shared machine hits both runtimes alike
            times["torch"].append(timed(lambda c=case: c.call(torch_wrapper)))
            times["ort"].append(timed(lambda c=case: c.call(ort_wrapper)))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"model": name, "case": case.label, "runs": runs, "unit": kind.unit,
                     "torch_s": med["torch"], "ort_s": med["ort"],
                     "torch_rate": case.work / med["torch"], "ort_rate": case.work / med["ort"]})
        print(f"  {name} {case.label}: torch {med['torch'] * 1000:.1f} ms, ORT {med['ort'] * 1000:.1f} ms "
              f"({runs} runs)", flush=True)
    return rows


def models_to_run(only: list[str] | None) -> list[dict]:
    """name (the table's label), source (what load() takes) and task of each model to measure."""
    if not only:
        return [{"name": m["name"], "source": m["name"], "task": m["task"]} for m in list_models()]
    out = []
    for arg in only:
        try:
            kind = read_source(arg).config["task"]["kind"]
        except UserError as err:
            sys.exit(f"--models {arg}: {err}")
        out.append({"name": Path(arg).name, "source": arg, "task": family_of(kind)})
    return out


def runtimes(quick: bool, budget: float, only: list[str] | None) -> tuple[list[dict], list[str], int]:
    rows, notes, ort_threads = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for m in models_to_run(only):
            kind = KINDS.get(m["task"])
            if kind is None:
                notes.append(f"`{m['name']}` skipped: no benchmark entry for task {m['task']!r}")
                continue
            onnx_path = Path(tmp) / f"{m['name']}.onnx"
            try:
                export_onnx(m["source"], onnx_path)
            except UserError as err:
                notes.append(f"`{m['name']}` skipped: {err}")
                continue
            torch_wrapper = load(m["source"], "cpu")
            ort_wrapper = load(str(onnx_path))
            ort_threads = ort_wrapper.module.session.get_session_options().intra_op_num_threads
            print(f"{m['name']} ({m['task']})", flush=True)
            rows += compare(m["name"], kind, torch_wrapper, ort_wrapper, quick, budget)
            del torch_wrapper, ort_wrapper
    return rows, notes, ort_threads


# -- the service under load -----------------------------------------------------------------------

def rss_kb(pid: int, field: str) -> int | None:
    """VmHWM (peak) or VmRSS (now) of a process from /proc, in kB; None off Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRSS:
    """The server's peak RSS: the kernel's exact high-water mark (VmHWM) where /proc has it, else
    the maximum of psutil samples every 20 ms."""

    def __init__(self, pid: int):
        self.pid, self.samples_max, self._stop = pid, 0, threading.Event()
        try:
            import psutil
            self.process = psutil.Process(pid)
        except ImportError:
            self.process = None
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while self.process is not None and not self._stop.wait(0.02):
            try:
                self.samples_max = max(self.samples_max, self.process.memory_info().rss // 1024)
            except Exception:  # noqa: BLE001  (process gone)
                return

    def stop(self) -> tuple[float, str]:
        """(peak MB, how it was measured)."""
        hwm = rss_kb(self.pid, "VmHWM")
        self._stop.set()
        self.thread.join()
        if hwm is not None:
            return max(hwm, self.samples_max) / 1024, "kernel VmHWM"
        if self.process is not None:
            return self.samples_max / 1024, "psutil, sampled every 20 ms"
        return float("nan"), "not available"


# service configurations: (label, serve options, --threads; 0 = the server's default, cores / concurrency)
SERVICE_CONFIGS = {
    "defaults": ("defaults (--concurrency 2 --queue 32, 1 thread each)", (), 0),
    "old-defaults": ("--concurrency 1 --queue 8 --threads 2 (the defaults before)",
                     ("--concurrency", "1", "--queue", "8"), 2),
    "one-worker": ("--concurrency 1 --queue 32 --threads 2", ("--concurrency", "1", "--queue", "32"), 2),
}


def service(total: int, in_flight: int, side: int, config: str = "defaults") -> dict:
    label, options, threads = SERVICE_CONFIGS[config]
    image = (photo_like(3, side, side).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    request = {"data": {"model": SERVICE_MODEL},
               "files": {"image": ("x.png", encode_image(image, ".png"), "image/png")}}
    with serve_process([SERVICE_MODEL], *options, threads=threads, start_timeout=120, cwd=ROOT) as (url, proc):
        idle_mb = (rss_kb(proc.pid, "VmRSS") or float("nan")) / 1024
        asyncio.run(post_many(url, "/v1/upscale", total=4, in_flight=1, **request))  # first calls allocate the pools
        peak = PeakRSS(proc.pid)
        t0 = time.perf_counter()
        results = asyncio.run(post_many(url, "/v1/upscale", total=total, in_flight=in_flight, **request))
        seconds = time.perf_counter() - t0
        peak_mb, method = peak.stop()
    ok = [r for r in results if r[0] == 200]
    shapes = {decode_image(body).shape for _, _, body in ok}
    if shapes and shapes != {(2 * side, 2 * side, 3)}:
        sys.exit(f"unexpected output sizes {shapes}")
    latencies = np.array([s for _, s, _ in results]) * 1000
    return {"model": SERVICE_MODEL, "config": label, "requests": total, "in_flight": in_flight, "side": side,
            "ok": len(ok), "503": sum(r[0] == 503 for r in results),
            "5xx": sum(r[0] >= 500 and r[0] != 503 for r in results),
            "other": sum(r[0] != 200 and r[0] < 500 for r in results),
            "p50_ms": float(np.percentile(latencies, 50)), "p95_ms": float(np.percentile(latencies, 95)),
            "seconds": seconds, "rps": total / seconds, "mpix_s": len(ok) * (2 * side) ** 2 / 1e6 / seconds,
            "idle_mb": idle_mb, "peak_mb": peak_mb, "rss_method": method}


# -- report ---------------------------------------------------------------------------------------

def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}, {cores} cores available, Linux {platform.release()}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")


def report(rows: list[dict], notes: list[str], svc: list[dict], ort_threads: int, command: str, load: tuple) -> str:
    lines = [f"Machine: {machine()}; torch threads {torch.get_num_threads()}, ONNX Runtime intra-op threads "
             f"{ort_threads} (CPU provider); 1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at "
             f"the end (other jobs share the cores). Date: {datetime.date.today().isoformat()}. "
             f"Command: `{command}`.",
             "",
             "PyTorch eager against ONNX Runtime through the same inference wrapper (padding, clamping, "
             "quantising to 8 bits for super-resolution and translation; noise and labels for generation; one-hot "
             "label maps for SPADE), one image per call, untiled; median of the runs after one warm-up, the two "
             "runtimes alternating call by call.",
             "",
             "| model | input | runs | torch ms | ORT ms | ORT speed-up | torch throughput | ORT throughput |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['case']} | {r['runs']} | {r['torch_s'] * 1000:,.1f} | "
                     f"{r['ort_s'] * 1000:,.1f} | {r['torch_s'] / r['ort_s']:.2f}x | "
                     f"{r['torch_rate']:,.2f} {r['unit']} | {r['ort_rate']:,.2f} {r['unit']} |")
    lines += [""] + [f"* {n}" for n in notes] + ([""] if notes else [])
    return "\n".join(lines + service_table(svc)) + "\n"


def service_table(svcs: list[dict]) -> list[str]:
    s = svcs[0]
    lines = [f"Service: `genforge serve --models {s['model']}` (PyTorch) in a child process, at each configuration "
             f"below; {s['requests']} POST /v1/upscale of a {s['side']}x{s['side']} PNG, {s['in_flight']} in flight, "
             f"from an httpx client in the benchmark process (it shares the cores with the server). Latency per "
             f"request, client side, queueing included (503s answer at once); peak RSS of the server process "
             f"({s['rss_method']}).",
             "",
             "| model | configuration | requests | in flight | 200 | 503 | other 5xx | 4xx | p50 ms | p95 ms | "
             "requests/s | MPix/s out | server RSS idle | server peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in svcs:
        lines.append(f"| {s['model']} | {s['config']} | {s['requests']} | {s['in_flight']} | {s['ok']} | {s['503']} | "
                     f"{s['5xx']} | {s['other']} | {s['p50_ms']:,.0f} | {s['p95_ms']:,.0f} | {s['rps']:.1f} | "
                     f"{s['mpix_s']:.2f} | {s['idle_mb']:,.0f} MB | {s['peak_mb']:,.0f} MB |")
    return lines


def write_readme(text: str) -> None:
    """The README section between the deploy markers; the section is added before ## Layout if absent."""
    if write_readme_section("deploy", text):
        return
    readme = ROOT / "README.md"
    content = readme.read_text()
    section = ("## Deployment benchmark\n\n`python bench/deploy.py` (or `make bench-deploy`; `--quick` for a smoke "
               "run) writes `bench/results/deploy.md`; the text below is its latest output.\n\n"
               "<!-- bench:deploy -->\n<!-- /bench:deploy -->\n\n")
    if "\n## Layout\n" in content:
        content = content.replace("\n## Layout\n", "\n" + section + "## Layout\n", 1)
    else:
        content = content.rstrip("\n") + "\n\n" + section
    readme.write_text(content)
    write_readme_section("deploy", text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small inputs, 2 runs, 40 requests")
    p.add_argument("--budget", type=float, default=15.0,
                   help="seconds per runtime and input that set N (2..25 runs after the warm-up)")
    p.add_argument("--requests", type=int, default=None, help="service requests (default 200, --quick 40)")
    p.add_argument("--in-flight", type=int, default=16)
    p.add_argument("--models", metavar="NAME_OR_PATH,...",
                   help="runtime comparison of these models only: shipped names, model folders or run directories "
                        "(default: every shipped model)")
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/results and README alone")
    p.add_argument("--service-only", action="store_true",
                   help="only the service under load: writes bench/results/deploy_service.md, leaves README alone")
    p.add_argument("--configs", default="defaults,old-defaults,one-worker",
                   help=f"service configurations to load, comma list of: {', '.join(SERVICE_CONFIGS)}")
    args = p.parse_args()
    torch.set_num_threads(THREADS)
    command = "python bench/deploy.py" + "".join(f" {a}" for a in sys.argv[1:])
    t0, load_start = time.perf_counter(), os.getloadavg()[0]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if unknown := [c for c in configs if c not in SERVICE_CONFIGS]:
        p.error(f"--configs: unknown {', '.join(unknown)}; choose from {', '.join(SERVICE_CONFIGS)}")
    total = args.requests or (40 if args.quick else 200)
    if args.service_only:
        svcs = []
        for config in configs:
            print(f"service under load: {config}", flush=True)
            svcs.append(service(total, args.in_flight, 128, config))
        text = (f"Machine: {machine()}; 1-minute load average {load_start:.1f} at the start and "
                f"{os.getloadavg()[0]:.1f} at the end (other jobs share the cores). Date: "
                f"{datetime.date.today().isoformat()}. Command: `{command}`.\n\n")
        text += "\n".join(service_table(svcs)) + "\n"
        print(text)
        if not (args.quick or args.no_write):
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "deploy_service.md").write_text("# Service under load\n\n" + text)
        return
    rows, notes, ort_threads = runtimes(args.quick, args.budget, args.models.split(",") if args.models else None)
    svcs = []
    for config in configs:
        print(f"service under load: {config}", flush=True)
        svcs.append(service(total, args.in_flight, 128, config))
    text = report(rows, notes, svcs, ort_threads, command, (load_start, os.getloadavg()[0]))
    print(text)
    print(f"bench took {time.perf_counter() - t0:.0f} s")
    if args.quick or args.no_write:
        return  # a smoke run never overwrites the published figures
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "deploy.md").write_text("# Deployment benchmark\n\n" + text)
    write_readme(text)


if __name__ == "__main__":
    main()
