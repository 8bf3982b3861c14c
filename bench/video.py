"""Video benchmark: frame-interpolation quality and speed against the classical baselines, and video
upscaling speed, memory and flicker with the shipped super-resolution models.

    python bench/video.py                          # the full run (about 15-25 minutes on 2 shared cores)
    python bench/video.py --quick                  # smoke run: few triplets, 1 timed run, 2-frame clips
    python bench/video.py --model /tmp/vfinet      # a model folder, run directory or .onnx not shipped yet

1. Quality: PSNR/SSIM (RGB, 8-bit, whole frames; an exact answer counts as PSNR_CAP dB, as `genforge
   eval` does) of frame repetition, the linear blend, DIS-flow interpolation (metrics.flow.dis_interpolate),
   the model in eager PyTorch and the model exported to ONNX (export_onnx) run on ONNX Runtime through the
   same Interpolator, on the holdout triplets of each bundled clip (data.triplets.holdout_triplets("clips"))
   and on fixed synthetic triplets from the BSDS500 val photos (skipped, with a note, when absent).
2. Speed: frames/s of DIS, the model eager and the model on ORT at 480p and 720p, one pair of bigbuckbunny
   frames resized, median of N runs after a warm-up, the methods alternating run by run. The model's time
   includes its DIS start flows (metrics.flow.intermediate_flows), also timed on their own.
3. Video upscaling: a 480p clip (bigbuckbunny's first frames resized to 854x480) through the real
   `genforge upscale` command, x2 and x4 with the shipped SR models, eager and ORT, each in a fresh child
   process that reports its own peak RSS (VmHWM) and its frame times; then the flicker figure
   (metrics.flow.flicker) of each output video against the input, beside per-frame bicubic's (written
   with the same encoder and crf).

Writes the report to -o (default bench/results/video.md); --quick prints only, unless -o is given."""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT  # noqa: E402  (path, OpenMP first)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from genforge.errors import UserError  # noqa: E402

BSDS_VAL = ROOT.parent / "shared" / "datasets" / "BSDS500" / "data" / "images" / "val"
SIZES = {"480p": (854, 480), "720p": (1280, 720)}
SR_MODELS = {2: "isrnet-x2", 4: "isrnet-x4"}
METHODS = ("repeat", "blend", "dis", "model", "ort")
LABELS = {"repeat": "repeat (frame 0)", "blend": "linear blend", "dis": "DIS flow", "model": "model (eager)",
          "ort": "model (ORT)"}


def settings(quick: bool) -> dict:
    return {"per_clip": 2 if quick else None, "synthetic": 4 if quick else 32, "synthetic_size": 256,
            "max_motion": 48.0, "runs": 1 if quick else 7,
            # x4 on the CPU takes 10-25 s a frame at 480p: fewer frames there (the table says how many)
            "clip_size": (426, 240) if quick else SIZES["480p"], "frames": {2: 2, 4: 2} if quick else {2: 30, 4: 12}}


def machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import onnxruntime
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}, {cores} cores available; Python {platform.python_version()}, torch {torch.__version__}, "
            f"onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__}; {threads} threads for torch, ONNX "
            f"Runtime (intra-op) and OpenCV")


def bigbuckbunny(first: int, count: int) -> list[np.ndarray]:
    from genforge.deploy.video import bundled_clip, open_video
    frames = []
    for k, frame in enumerate(open_video(bundled_clip("bigbuckbunny.mp4"))):
        if k >= first + count:
            break
        if k >= first:
            frames.append(frame)
    return frames


def resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return frame if frame.shape[1::-1] == size else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


# -- 1. quality -----------------------------------------------------------------------------------

def triplet_sets(s: dict) -> tuple[dict, list[str]]:
    from genforge.data import read_images
    from genforge.data.triplets import holdout_triplets
    sets, notes = holdout_triplets("clips"), []
    if s["per_clip"]:
        sets = {name: rows[:s["per_clip"]] for name, rows in sets.items()}
    if BSDS_VAL.is_dir():
        photos = [np.ascontiguousarray(p[:, :, :3]) for p in read_images(f"folder:{BSDS_VAL}")[0]]
        sets.update(holdout_triplets("none", photos=photos, synthetic=s["synthetic"], size=s["synthetic_size"],
                                     max_motion=s["max_motion"]))
    else:
        notes.append(f"synthetic set skipped: {BSDS_VAL} is absent")
    return sets, notes


def quality(vfi, vfi_ort, sets: dict) -> list[dict]:
    from genforge.deploy.interpolator import PSNR_CAP
    from genforge.metrics.flow import dis_interpolate
    from genforge.metrics.psnr_ssim import psnr, ssim
    rows, pooled = [], {m: {"psnr": [], "ssim": []} for m in METHODS}
    for name, triplets in sets.items():
        per, apart = {m: {"psnr": [], "ssim": []} for m in METHODS}, 0
        for a, g, b, t in triplets:
            outs = {"repeat": a, "blend": np.round((1 - t) * a.astype(np.float64) + t * b).astype(np.uint8),
                    "dis": dis_interpolate(a, b, t), "model": vfi.interpolate_array(a, b, t),
                    "ort": vfi_ort.interpolate_array(a, b, t)}
            apart = max(apart, int(np.abs(outs["model"].astype(np.int16) - outs["ort"]).max()))
            for m, out in outs.items():
                for metric, value in (("psnr", min(psnr(out, g), PSNR_CAP)), ("ssim", ssim(out, g))):
                    per[m][metric].append(value)
                    if name != "synthetic":
                        pooled[m][metric].append(value)
        rows.append({"set": name, "n": len(triplets), "size": f"{a.shape[1]}x{a.shape[0]}", "apart": apart,
                     **{m: {k: float(np.mean(v)) for k, v in per[m].items()} for m in METHODS}})
        print(f"  {name}: " + ", ".join(f"{m} {rows[-1][m]['psnr']:.2f}" for m in METHODS), flush=True)
    clip_rows = [r for r in rows if r["set"] != "synthetic"]
    if len(clip_rows) > 1:
        rows.insert(len(clip_rows), {"set": "all clips, pooled", "n": sum(r["n"] for r in clip_rows), "size": "-",
                                     "apart": max(r["apart"] for r in clip_rows),
                                     **{m: {k: float(np.mean(v)) for k, v in pooled[m].items()} for m in METHODS}})
    return rows


# -- 2. speed -------------------------------------------------------------------------------------

def speed(vfi, vfi_ort, runs: int) -> list[dict]:
    from genforge.metrics.flow import dis_interpolate, intermediate_flows
    a0, b0 = bigbuckbunny(106, 2)  # the first pair of bigbuckbunny's holdout section (its last 20%)
    rows = []
    for label, size in SIZES.items():
        a, b = resize(a0, size), resize(b0, size)
        calls = {"dis": lambda a=a, b=b: dis_interpolate(a, b, 0.5),
                 "flows": lambda a=a, b=b: intermediate_flows(a, b, 0.5),
                 "model": lambda a=a, b=b: vfi.interpolate_array(a, b, 0.5),
                 "ort": lambda a=a, b=b: vfi_ort.interpolate_array(a, b, 0.5)}
        times = {k: [] for k in calls}
        for call in calls.values():
            call()  # warm-up: allocator pools, ORT's arena, DIS's buffers
        for _ in range(runs):  # interleaved: drift on a shared machine hits every method alike
            for k, call in calls.items():
                t0 = time.perf_counter()
                call()
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"label": label, "size": f"{size[0]}x{size[1]}", "runs": runs, **med})
        print(f"  {label}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in med.items()), flush=True)
    return rows


# -- 3. video upscaling ---------------------------------------------------------------------------

def child_upscale(model: str, src: str, dst: str) -> None:
    """One measurement, in its own process: the real `genforge upscale` command, with a time stamp at each
    output frame; prints its own peak RSS and the stamps as JSON."""
    import genforge.deploy.video as video
    from genforge.cli import main
    stamps, transcode = [], video.transcode

    def stamped(src_, dst_, transform, **kw):
        def frames(it):
            for f in transform(it):
                stamps.append(time.perf_counter())
                yield f
        return transcode(src_, dst_, frames, **kw)

    video.transcode = stamped  # cmd_upscale imports it from the module when it runs
    t0 = time.perf_counter()
    rc = main(["upscale", model, src, "-o", dst, "--no-progress"])
    wall = time.perf_counter() - t0
    print(json.dumps({"rc": rc, "wall": wall, "stamps": [s - t0 for s in stamps], "peak_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak RSS: the kernel's VmHWM of its own address space. Not ru_maxrss, which after
    fork + exec starts at the parent's RSS at the fork (Linux keeps the larger of the two)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_clip(path: Path, frames: list[np.ndarray]) -> None:
    from genforge.deploy.video import VideoWriter
    with VideoWriter(path, 25, frames[0].shape[1], frames[0].shape[0], progress=False) as w:
        for f in frames:
            w.write(f)


def upscaling(frames_per_scale: dict, size: tuple[int, int], threads: int, tmp: Path) -> list[dict]:
    from genforge.deploy.export import export_onnx
    from genforge.deploy.video import open_video, transcode
    from genforge.metrics.flow import flicker
    from genforge.metrics.psnr_ssim import upscale_bicubic
    frames = [resize(f, size) for f in bigbuckbunny(0, max(frames_per_scale.values()))]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    rows, bicubic = [], {}
    for scale, model in SR_MODELS.items():
        n = frames_per_scale[scale]
        src = tmp / f"bigbuckbunny_{size[1]}p_{n}.mp4"
        if not src.exists():
            make_clip(src, frames[:n])
        bic = tmp / f"bicubic_x{scale}.mp4"
        transcode(src, bic, lambda it, s=scale: (upscale_bicubic(f, s) for f in it), progress=False)
        bicubic[scale] = flicker(open_video(bic), open_video(src))
        onnx_path = tmp / f"{model}.onnx"
        export_onnx(model, onnx_path)
        for runtime, arg in (("eager", model), ("ORT", str(onnx_path))):
            dst = tmp / f"{model}_{runtime}.mp4"
            res = subprocess.run([sys.executable, __file__, "--child-upscale", arg, str(src), str(dst)], env=env,
                                 capture_output=True, text=True, cwd=ROOT)
            if res.returncode:
                sys.exit(f"{model} {runtime}: {res.stderr[-2000:]}")
            out = json.loads(res.stdout.strip().splitlines()[-1])
            if out["rc"]:
                sys.exit(f"{model} {runtime}: genforge upscale exited {out['rc']}: {res.stderr[-2000:]}")
            stamps = out["stamps"]
            steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
            with open_video(dst) as r:
                out_size = f"{r.width}x{r.height}"
            rows.append({"scale": scale, "model": model, "runtime": runtime, "frames": len(stamps),
                         "input": f"{size[0]}x{size[1]}", "out": out_size,
                         "fps": steady, "first_s": stamps[0], "wall": out["wall"], "peak_mb": out["peak_mb"],
                         "flicker": flicker(open_video(dst), open_video(src)), "bicubic": bicubic[scale]})
            print(f"  x{scale} {runtime}: {steady:.3f} frames/s, peak {out['peak_mb']:.0f} MB, "
                  f"flicker {rows[-1]['flicker']:.2f} (bicubic {bicubic[scale]:.2f})", flush=True)
    return rows


# -- report ---------------------------------------------------------------------------------------

def cell(r: dict, m: str) -> str:
    return f"{r[m]['psnr']:.2f} / {r[m]['ssim']:.4f}"


def report(model: str, quick: bool, threads: int, q: list[dict], sp: list[dict], up: list[dict], notes: list[str],
           command: str, loads: tuple) -> str:
    today = datetime.date.today().isoformat()
    head = (f"Machine: {machine(threads)}. 1-minute load average {loads[0]:.1f} at the start and {loads[1]:.1f} at "
            f"the end (other jobs share the cores). Date: {today}. Command: `{command}`. Model: `{model}`"
            + (" (a --quick smoke run: small subsets, not the published figures)" if quick else "") + ".")
    from genforge.deploy.interpolator import PSNR_CAP
    synth = next((r for r in q if r["set"] == "synthetic"), None)
    lines = [head, "", "**Interpolation quality.** PSNR (dB) / SSIM, RGB, 8-bit, whole frames, t = 1/2; an exact "
             f"answer counts as {PSNR_CAP:.0f} dB (as `genforge eval`). Sets: the holdout triplets of each bundled "
             "clip (frames k, k+1, k+2 of its last 20%, k even: `data.triplets.holdout_triplets(\"clips\")`"
             + (", the first few only" if quick else "") + ")"
             + (f" and {synth['n']} fixed synthetic triplets of {synth['size']} px from the BSDS500 val photos "
                "(max_motion 48, seed 1234)" if synth else "") + ". DIS: `metrics.flow.dis_interpolate` (medium "
             "preset, consistency-weighted blend). ORT: the model exported with `export_onnx` to a temporary .onnx "
             "file, through the same Interpolator; last column: the largest difference between the eager and ORT "
             "frames, in 8-bit levels.", "",
             "| set | triplets | size | " + " | ".join(LABELS[m] for m in METHODS) + " | model - DIS (eager) | "
             "model - DIS (ORT) | max abs(eager - ORT) |",
             "|---|---|---|" + "---|" * (len(METHODS) + 3)]
    for r in q:
        gaps = " | ".join(f"{r[m]['psnr'] - r['dis']['psnr']:+.2f} dB" for m in ("model", "ort"))
        lines.append(f"| {r['set']} | {r['n']} | {r['size']} | " + " | ".join(cell(r, m) for m in METHODS)
                     + f" | {gaps} | {r['apart']} |")
    lines += ["", "**Interpolation speed.** One pair of bigbuckbunny frames (its frames 106 and 107, the start of "
              "the holdout section; INTER_AREA resized to 854x480, native at 1280x720), the frame at t = 1/2, "
              f"median of {sp[0]['runs']} run{'s' if sp[0]['runs'] > 1 else ''} after one warm-up, the methods "
              f"alternating run by run, {threads} "
              "threads, one frame per call. The model's time includes its DIS start flows "
              "(`metrics.flow.intermediate_flows`: DIS both ways, computed by the Interpolator before the network "
              "runs), also timed alone; their share is of the model's time.", "",
              "| size | DIS ms | DIS frames/s | model eager ms | eager frames/s | model ORT ms | ORT frames/s | "
              "DIS start flows ms | start-flow share (eager / ORT) | ORT >= 10 frames/s at 480p |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sp:
        goal = ("yes" if r["ort"] <= 0.1 else "no") if r["label"] == "480p" else "-"
        lines.append(f"| {r['size']} | {r['dis'] * 1e3:,.0f} | {1 / r['dis']:.2f} | {r['model'] * 1e3:,.0f} | "
                     f"{1 / r['model']:.2f} | {r['ort'] * 1e3:,.0f} | {1 / r['ort']:.2f} | {r['flows'] * 1e3:,.0f} | "
                     f"{r['flows'] / r['model']:.0%} / {r['flows'] / r['ort']:.0%} | {goal} |")
    frames, inputs = sorted({r["frames"] for r in up}), sorted({r["input"] for r in up})
    lines += ["", "**Video upscaling.** Input: bigbuckbunny's first " + " / ".join(str(f) for f in frames)
              + " frames (the frames column says which row read how many) INTER_AREA resized to "
              + ", ".join(inputs) + (" (--quick: a quarter of 480p's pixels)" if quick else "") + ", written as H.264 "
              "(crf 18, 25 fps, no audio). Each row: `genforge upscale MODEL in.mp4 -o out.mp4` (default --tile, "
              "H.264 crf 18 out) in a fresh child process with OMP_NUM_THREADS="
              f"{threads}; ORT: the model exported to .onnx. frames/s: steady rate between the first and the last "
              "output frame (decode, network, encode); the time from the command's start (model loading, ONNX "
              "session) to its first output frame is its own column; peak RSS: the child's own VmHWM (the "
              "whole process: Python, torch, the model, the codec). Flicker: `metrics.flow.flicker` of the "
              "output video against the input (mean absolute 8-bit difference between consecutive output "
              "frames warped with DIS flow of the input, over flow-consistent pixels; lower is steadier), "
              "beside per-frame bicubic written the same way.", "",
              "| scale | model | runtime | frames | input -> output | frames/s | s/frame | start to first frame s | "
              "peak RSS | flicker | bicubic flicker |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in up:
        lines.append(f"| x{r['scale']} | {r['model']} | {r['runtime']} | {r['frames']} | {r['input']} -> {r['out']} | "
                     f"{r['fps']:.3f} | {1 / r['fps']:.2f} | {r['first_s']:.1f} | {r['peak_mb']:,.0f} MB | "
                     f"{r['flicker']:.2f} | {r['bicubic']:.2f} |")
    lines += [""] + [f"* {n}" for n in notes] + ([""] if notes else [])
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vfinet", help="frame-interpolation model: shipped name, model folder, "
                                                     "run directory (default: the shipped vfinet)")
    p.add_argument("--quick", action="store_true", help="smoke run: a few triplets a set, 1 timed run, 2-frame "
                                                        "clips (< 3 minutes); prints only unless -o is given")
    p.add_argument("--threads", type=int, default=2, help="torch, ONNX Runtime and OpenCV threads (default 2)")
    p.add_argument("-o", "--output", help=f"report file (default {RESULTS / 'video.md'}; --quick: none)")
    p.add_argument("--child-upscale", nargs=3, metavar=("MODEL", "SRC", "DST"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_upscale:
        return child_upscale(*args.child_upscale)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # what OnnxRunner gives ONNX Runtime's intra-op pool
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from genforge.deploy.export import export_onnx
    from genforge.deploy.interpolator import Interpolator
    command = "python bench/video.py" + "".join(f" {a}" for a in sys.argv[1:])
    s, t0, load_start = settings(args.quick), time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            vfi = Interpolator(args.model, device="cpu")
            export_onnx(args.model, tmp / "vfi.onnx")
        except UserError as err:
            sys.exit(f"--model {args.model}: {err}")
        vfi_ort = Interpolator(str(tmp / "vfi.onnx"))
        print(f"quality ({time.perf_counter() - t0:.0f} s)", flush=True)
        sets, notes = triplet_sets(s)
        q = quality(vfi, vfi_ort, sets)
        print(f"speed ({time.perf_counter() - t0:.0f} s)", flush=True)
        sp = speed(vfi, vfi_ort, s["runs"])
        del vfi, vfi_ort
        print(f"video upscaling ({time.perf_counter() - t0:.0f} s)", flush=True)
        up = upscaling(s["frames"], s["clip_size"], args.threads, tmp)
    text = report(args.model, args.quick, args.threads, q, sp, up, notes, command, (load_start, os.getloadavg()[0]))
    print(text)
    print(f"bench took {time.perf_counter() - t0:.0f} s")
    out = args.output or (None if args.quick else str(RESULTS / "video.md"))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("# Video benchmark\n\n" + text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
