"""Super-resolution benchmark: Set5 / Set14 / BSD100 PSNR/SSIM (Y, the published protocol), parameters, CPU
training time and inference speed (eager PyTorch and ONNX Runtime) for bicubic, FSRCNN run side by side in the
same process, published reference rows and the given models, plus a crop comparison image.

    python bench/superres.py --scale 2 --model isrnet-x2=isrnet-x2 --model isrnet-x2-fast=runs/repsr_x2 \\
        --fsrcnn /work/.mirror/yjn870+FSRCNN-pytorch/repo

Models are run directories, model folders or shipped names. --fsrcnn is a checkout or bare git directory of the
public FSRCNN-pytorch repository (github.com/yjn870/FSRCNN-pytorch): its network definition is loaded at run time,
never copied here. Its weights are published on Dropbox, which this machine cannot reach, so the FSRCNN row has
speed only (speed does not depend on the weights) and its quality is the published row. BSD100 is BSDS500's val
split (../shared/datasets), read as an HR-only folder. Writes bench/results/superres_x{scale}.md and .json."""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from common import ROOT, machine_line, write_readme_section  # noqa: E402  (path and OpenMP first)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genforge.data.io import write_image  # noqa: E402
from genforge.deploy.upscaler import evaluate_sr, sr_upscale_fn  # noqa: E402
from genforge.engine.logging import training_seconds  # noqa: E402
from genforge.metrics.psnr_ssim import crop_to_scale, load_benchmark  # noqa: E402

SHARED = ROOT.parent / "shared"
SETS = {"Set5": SHARED / "benchmarks" / "Set5", "Set14": SHARED / "benchmarks" / "Set14",
        "BSD100": SHARED / "datasets" / "BSDS500" / "data" / "images" / "val"}
# Published Y-channel PSNR (Set5, Set14, BSD100): FSRCNN and VDSR as tabulated in the LapSRN paper (Lai et al.,
# CVPR 2017), EDSR from its paper (Lim et al., CVPRW 2017)
PUBLISHED = {2: {"FSRCNN (published)": (37.05, 32.66, 31.53), "VDSR (published)": (37.53, 33.05, 31.90),
                 "EDSR (published)": (38.11, 33.92, 32.32)},
             4: {"FSRCNN (published)": (30.72, 27.61, 26.98), "VDSR (published)": (31.35, 28.01, 27.29),
                 "EDSR (published)": (32.46, 28.80, 27.71)}}
SIZE = 256  # network speed: a SIZE x SIZE input


def load_fsrcnn(repo: Path, scale: int) -> torch.nn.Module:
    """FSRCNN(56, 12, 4) from the public repository's models.py (a checkout or a bare git dir), random weights."""
    path = repo / "models.py"
    source = path.read_text() if path.is_file() else subprocess.run(
        ["git", "--git-dir", str(repo), "show", "HEAD:models.py"], check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("fsrcnn_models")
    exec(compile(source, f"{repo}/models.py", "exec"), module.__dict__)  # noqa: S102 - a public file we fetched
    return module.FSRCNN(scale_factor=scale).eval()


def networks(models: dict[str, str], scale: int, fsrcnn: Path | None) -> dict[str, torch.nn.Module]:
    """The bare networks (deployment form: folded, spectral norms removed) for the speed columns."""
    from genforge.deploy.pretrained import build_export_module, read_source
    nets = {}
    if fsrcnn is not None:
        nets["FSRCNN (side by side)"] = load_fsrcnn(fsrcnn, scale)
    for name, model in models.items():
        if model != "bicubic":
            nets[name] = build_export_module(read_source(model))
    return nets


def onnx_sessions(nets: dict[str, torch.nn.Module], folder: Path) -> dict:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    sessions = {}
    for name, net in nets.items():
        channels = int(getattr(net, "channels", 1))
        path = folder / f"{len(sessions)}.onnx"
        x = torch.rand(1, channels, 64, 64)
        torch.onnx.export(net, (x,), str(path), input_names=["lr"], output_names=["sr"], opset_version=17,
                          dynamic_axes={"lr": {2: "h", 3: "w"}, "sr": {2: "H", 3: "W"}}, dynamo=False)
        sessions[name] = (ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), channels)
    return sessions


def speeds(nets: dict, sessions: dict, scale: int, repeats: int) -> dict[str, dict]:
    """Output MPix/s of each network on a SIZE x SIZE input, eager and ORT, rounds interleaved so that
    every model sees the same machine load; medians."""
    times = {name: {"eager": [], "ort": []} for name in nets}
    inputs = {name: torch.rand(1, int(getattr(net, "channels", 1)), SIZE, SIZE) for name, net in nets.items()}
    with torch.inference_mode():
        for round_ in range(repeats + 1):
            for name, net in nets.items():
                x = inputs[name]
                t0 = time.perf_counter()
                net(x)
                t1 = time.perf_counter()
                session, _ = sessions[name]
                session.run(None, {"lr": x.numpy()})
                t2 = time.perf_counter()
                if round_:  # the first round warms up
                    times[name]["eager"].append(t1 - t0)
                    times[name]["ort"].append(t2 - t1)
    pixels = (SIZE * scale) ** 2 / 1e6
    return {name: {k: pixels / statistics.median(v) for k, v in t.items()} for name, t in times.items()}


def end_to_end(model: str, scale: int, repeats: int = 5) -> float:
    """Output MPix/s through the Upscaler for a SIZE x SIZE RGB image (colour conversion, chroma, padding)."""
    fn = sr_upscale_fn(model, scale)
    lr = (np.random.default_rng(0).random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    fn(lr, scale)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(lr, scale)
        times.append(time.perf_counter() - t0)
    return (SIZE * scale) ** 2 / statistics.median(times) / 1e6


def describe(model: str) -> tuple[int, str]:
    """(parameters of the training form, what the network sees: "Y" for luma models, or "RGB")."""
    if model == "bicubic":
        return 0, "-"
    from genforge.deploy.pretrained import read_source
    source = read_source(model)
    params = sum(v.numel() for v in source.state.values() if v.is_floating_point())
    return params, "Y" if source.config["model"].get("channels") == 1 else "RGB"


def comparison_image(models: dict[str, str], scale: int, out: Path, image: str = "comic", crop: int = 96) -> None:
    """Crops of one Set14 image side by side: each model, then the ground truth."""
    items = {i.name: i for i in load_benchmark(SETS["Set14"], scale)}
    item = items[image]
    hr = crop_to_scale(item.hr, scale)
    top, left = hr.shape[0] // 3, hr.shape[1] // 3
    tiles = [sr_upscale_fn(m, scale)(item.lr, scale)[top:top + crop, left:left + crop, :3] for m in models.values()]
    tiles.append(hr[top:top + crop, left:left + crop, :3])
    gap = np.full((crop, 4, 3), 255, np.uint8)
    row = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
    write_image(out, row.repeat(3, axis=0).repeat(3, axis=1))  # nearest x3 so pixels are visible


def cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(rows: list[dict], scale: int, notes: list[str]) -> list[str]:
    sets = [s for s in SETS if any(s in r for r in rows)]
    head = " | ".join(f"{s} PSNR | {s} SSIM" for s in sets)
    lines = [f"x{scale}, Y channel, HR cropped to a multiple of the scale, {scale} px shaved (the published protocol); "
             f"BSD100 = BSDS500 val, LR made with the project's MATLAB-style bicubic. Speed: output MPix/s of the "
             f"network alone on a {SIZE}x{SIZE} input (Y for luma models), eager PyTorch and ONNX Runtime, medians of "
             f"rounds interleaved across models, and end to end through `genforge upscale`'s Upscaler for an RGB "
             f"image. Detail: Laplacian energy of the output over the ground truth's on {sets[-1]} (1 = as much "
             f"fine detail; blur < 1; it counts detail, not correct detail). {machine_line()}.", *notes, "",
             f"| model | input | params | CPU training | {head} | detail | MPix/s eager | MPix/s ORT | eager / FSRCNN "
             "| MPix/s end to end |",
             "|---|---|---|---|" + "---|---|" * len(sets) + "---|---|---|---|---|"]
    base = next((r["speed"]["eager"] for r in rows if r["name"].startswith("FSRCNN (side")), None)
    for r in rows:
        t = f"{r['train_s'] / 60:.0f} min" if r.get("train_s") else "-"
        scores = " | ".join(f"{cell(r.get(s, {}).get('psnr'), '.2f')} | {cell(r.get(s, {}).get('ssim'), '.4f')}"
                            for s in sets)
        sp = r.get("speed", {})
        ratio = f"{sp['eager'] / base:.2f}x" if base and sp else "-"
        params = f"{r['params']:,}" if r.get("params") is not None else "-"
        detail = cell(r.get(sets[-1], {}).get("detail"), ".2f")
        lines.append(f"| {r['name']} | {r.get('colour', '-')} | {params} | {t} | {scores} | {detail} | "
                     f"{cell(sp.get('eager'), '.2f')} | {cell(sp.get('ort'), '.2f')} | {ratio} | "
                     f"{cell(r.get('e2e'), '.2f')} |")
    return lines


def train_seconds(model: str) -> float | None:
    """A run's training wall time from its log; for a model folder or shipped name, the elapsed time its
    config.json recorded at export."""
    from genforge.deploy.pretrained import read_source
    seconds = training_seconds(model)
    if seconds is None and model != "bicubic":
        elapsed = (read_source(model).training or {}).get("elapsed_min")
        seconds = None if elapsed is None else elapsed * 60
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--fsrcnn", type=Path, help="FSRCNN-pytorch checkout or bare git dir (speed side by side)")
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args()
    torch.set_num_threads(2)
    models = {"bicubic": "bicubic"} | dict(m.split("=", 1) for m in args.model)
    notes = []
    missing = [s for s, path in SETS.items() if not path.is_dir()]
    if missing:
        notes.append(f"Not found here, so not scored: {', '.join(missing)}.")
    nets = networks(models, args.scale, args.fsrcnn)
    with tempfile.TemporaryDirectory() as tmp:
        fast = speeds(nets, onnx_sessions(nets, Path(tmp)), args.scale, args.repeats)
    rows = []
    if args.fsrcnn is not None:
        fsrcnn = nets["FSRCNN (side by side)"]
        rows.append({"name": "FSRCNN (side by side)", "colour": "Y",
                     "params": sum(q.numel() for q in fsrcnn.parameters()),
                     "speed": fast["FSRCNN (side by side)"]})
        notes.append("FSRCNN (side by side): the network of github.com/yjn870/FSRCNN-pytorch (d=56, s=12, m=4) run in "
                     "this process for speed; its weights sit on Dropbox, unreachable here, so its scores are the "
                     "published row below.")
    for name, scores in PUBLISHED.get(args.scale, {}).items():
        rows.append({"name": name, **{s: {"psnr": v, "ssim": None} for s, v in zip(SETS, scores)}})
    for name, model in models.items():
        params, colour = describe(model)
        row = {"name": name, "model": model, "params": params, "colour": colour, "train_s": train_seconds(model),
               "speed": fast.get(name, {}), "e2e": end_to_end(model, args.scale)}
        for bench, path in SETS.items():
            if path.is_dir():
                r = evaluate_sr(model, str(path), args.scale)
                row[bench] = {"psnr": r["psnr"], "ssim": r["ssim"], "detail": r["detail"]}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    lines = table(rows, args.scale, notes)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    title = f"# Super-resolution x{args.scale}\n\n"
    (results / f"superres_x{args.scale}.md").write_text(title + "\n".join(lines) + "\n")
    (results / f"superres_x{args.scale}.json").write_text(json.dumps(rows, indent=2))
    comparison_image(models, args.scale, results / f"superres_x{args.scale}_comic.png")
    print("\n".join(lines))
    write_readme(results)


def write_readme(results: Path) -> None:
    """README: every scale measured so far, each with its comparison image and the order of its crops."""
    parts = []
    for md in sorted(results.glob("superres_x*.md")):
        scale = md.stem.split("_x")[1]
        body = md.read_text().split("\n", 2)[2]  # without the title line
        order = [r["name"] for r in json.loads(md.with_suffix(".json").read_text()) if "model" in r] + ["ground truth"]
        parts.append(f"**x{scale}**\n\n{body}\nCrops of Set14 comic, left to right: {' | '.join(order)}: "
                     f"[bench/results/superres_x{scale}_comic.png](bench/results/superres_x{scale}_comic.png)\n")
    write_readme_section("superres", "\n".join(parts))


if __name__ == "__main__":
    main()
