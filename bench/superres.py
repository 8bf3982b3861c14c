"""Super-resolution benchmark: Set5/Set14 PSNR/SSIM (Y, the published protocol), parameters, CPU
training time and inference speed for bicubic and trained models, plus a crop comparison image.

    python bench/superres.py --model isrnet=runs/isrnet_x2-... --model lapsrn=runs/lapsrn_x2-... --scale 2

Models are run directories, model folders or shipped names; training happens with their configs
(genforge train configs/...). Writes bench/results/superres_x{scale}.md and .json."""

import argparse
import json
import statistics
import time
from pathlib import Path

from common import ROOT, machine_line, write_readme_section  # noqa: E402  (path and OpenMP first)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genforge.data.io import write_image  # noqa: E402
from genforge.engine.logging import training_seconds  # noqa: E402
from genforge.deploy.upscaler import evaluate_sr, sr_upscale_fn  # noqa: E402
from genforge.metrics.psnr_ssim import crop_to_scale, load_benchmark  # noqa: E402

BENCH = ROOT.parent / "shared" / "benchmarks"


def speed(model: str, scale: int, size: int = 256, repeats: int = 5) -> float:
    """Output megapixels per second for a size x size RGB input (median of repeats)."""
    fn = sr_upscale_fn(model, scale)
    lr = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    fn(lr, scale)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(lr, scale)
        times.append(time.perf_counter() - t0)
    return (size * scale) ** 2 / statistics.median(times) / 1e6


def describe(model: str) -> tuple[int, str]:
    """(parameters, what the network sees: "Y" for luma models, whose chroma is bicubic, or "RGB")."""
    if model == "bicubic":
        return 0, "-"
    from genforge.deploy.upscaler import Upscaler
    up = Upscaler(model, device="cpu")
    return sum(p.numel() for p in up.module.parameters()), "Y" if up.channels == 1 else "RGB"


def comparison_image(models: dict[str, str], scale: int, out: Path, image: str = "comic", crop: int = 96) -> None:
    """Crops of one Set14 image side by side: each model, then the ground truth."""
    items = {i.name: i for i in load_benchmark(BENCH / "Set14", scale)}
    item = items[image]
    hr = crop_to_scale(item.hr, scale)
    top, left = hr.shape[0] // 3, hr.shape[1] // 3
    tiles = []
    for model in models.values():
        sr = sr_upscale_fn(model, scale)(item.lr, scale)
        tiles.append(sr[top:top + crop, left:left + crop, :3])
    tiles.append(hr[top:top + crop, left:left + crop, :3])
    gap = np.full((crop, 4, 3), 255, np.uint8)
    row = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
    big = row.repeat(3, axis=0).repeat(3, axis=1)  # nearest x3 so pixels are visible
    write_image(out, big)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--scale", type=int, required=True)
    args = p.parse_args()
    torch.set_num_threads(2)
    models = {"bicubic": "bicubic"} | dict(m.split("=", 1) for m in args.model)
    rows = []
    for name, model in models.items():
        params, colour = describe(model)
        row = {"name": name, "model": model, "params": params, "colour": colour, "train_s": training_seconds(model),
               "mpix_s": speed(model, args.scale)}
        for bench in ("Set5", "Set14"):
            r = evaluate_sr(model, str(BENCH / bench), args.scale)
            row[bench] = {"psnr": r["psnr"], "ssim": r["ssim"]}
        rows.append(row)
        print(json.dumps(row))
    lines = [f"x{args.scale}, Y channel, HR cropped to a multiple of the scale, {args.scale} px shaved (the published "
             f"protocol). Inference: output MPix/s for a 256x256 RGB input, median of 5. {machine_line()}.", "",
             "| model | network input | params | CPU training | Set5 PSNR | Set5 SSIM | Set14 PSNR | Set14 SSIM "
             "| MPix/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = f"{r['train_s'] / 60:.0f} min" if r["train_s"] else "-"
        lines.append(f"| {r['name']} | {r['colour']} | {r['params']:,} | {t} | {r['Set5']['psnr']:.2f} | "
                     f"{r['Set5']['ssim']:.4f} | "
                     f"{r['Set14']['psnr']:.2f} | {r['Set14']['ssim']:.4f} | {r['mpix_s']:.2f} |")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    text = f"# Super-resolution x{args.scale}\n\n" + "\n".join(lines) + "\n"
    (results / f"superres_x{args.scale}.md").write_text(text)
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
        order = [r["name"] for r in json.loads(md.with_suffix(".json").read_text())] + ["ground truth"]
        parts.append(f"**x{scale}**\n\n{body}\nCrops of Set14 comic, left to right: {' | '.join(order)}: "
                     f"[bench/results/superres_x{scale}_comic.png](bench/results/superres_x{scale}_comic.png)\n")
    write_readme_section("superres", "\n".join(parts))


if __name__ == "__main__":
    main()
