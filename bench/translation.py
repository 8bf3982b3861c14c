"""Translation benchmark: Pix2Pix (with and without its GAN loss), CycleGAN and SPADE on the bundled data.

For each model: parameters, seconds per training iteration at 128 px crops (median over timed
iterations, 2 CPU threads), then a training run of the shipped config sized to a fixed CPU budget
(steps = budget / measured seconds per step, so the learning-rate schedule completes), and the
holdout L1/PSNR/SSIM against the ground truth: the paired target, or for the unpaired photo2poster
the known true mapping. One PNG grid per model (holdout input | output | ground truth).

    python bench/translation.py [--budget 480] [--models pix2pix,pix2pix_l1,cyclegan,spade]
    python bench/translation.py --upsample [--budget 300]   # the upsampler table: each generator x
                                                            # transposed | resize_conv[_bilinear] | pixel_shuffle

Writes bench/results/translation.md/.json, bench/results/translation_<model>.png and the README
section between the bench:translation markers."""

import argparse
import json
import shutil
import statistics
import time

from common import RESULTS, ROOT, machine_line, write_readme_section  # noqa: E402  (path, OpenMP first)

import torch  # noqa: E402

from genforge.config import load_config  # noqa: E402
from genforge.data.pair_folders import read_translation  # noqa: E402
from genforge.data.patches import TranslationPatches  # noqa: E402
from genforge.evaluate import evaluate  # noqa: E402
from genforge.registry import build_task  # noqa: E402
from genforge.train import train  # noqa: E402

MODELS = {  # name -> (config, overrides)
    "pix2pix": ("pix2pix_edges2photos", []),
    "pix2pix_l1": ("pix2pix_edges2photos", ["task.gan_loss=none"]),
    "cyclegan": ("cyclegan_photo2poster", []),
    "spade": ("spade_labels2photos", []),
}
UPSAMPLES = ("transposed", "resize_conv", "resize_conv_bilinear", "pixel_shuffle")
for _base, _config in (("pix2pix", "pix2pix_edges2photos"), ("cyclegan", "cyclegan_photo2poster")):
    for _up in UPSAMPLES:  # the generator's upsampler at one equal budget: the measured choice of default
        MODELS[f"{_base}_up_{_up}"] = (_config, [f"model.upsample={_up}"])
DEFAULT_MODELS = "pix2pix,pix2pix_l1,cyclegan,spade"


def seconds_per_step(config: str, overrides: list[str], patch: int, steps: int = 6) -> float:
    """Median wall time of one training iteration (forward, backward, every optimizer) on patch-px crops."""
    cfg = load_config(ROOT / "configs" / f"{config}.yaml", overrides + [f"task.patch_size={patch}"])
    data = read_translation(cfg.data.dataset, "train", label_nc=getattr(cfg.model, "label_nc", None))
    batches = TranslationPatches(data, patch_size=patch, batch_size=cfg.train.batch_size, seed=0)
    task = build_task(cfg, torch.device("cpu"))
    times = []
    for step in range(steps + 2):
        batch = batches.batch(step)
        t0 = time.perf_counter()
        task.begin_step()
        task.training_step(batch, step)
        task.end_step()
        if step >= 2:  # the first iterations allocate
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def grid(run, out) -> None:
    """Holdout crops: input | output | ground truth, one row per holdout image."""
    from genforge.demo import translation_sheet
    from genforge.deploy.translator import Translator
    translation_sheet([Translator(str(run), device="cpu")], out)


def run_model(name: str, budget: float, out_root) -> dict:
    config, overrides = MODELS[name]
    cfg = load_config(ROOT / "configs" / f"{config}.yaml", overrides)
    s128 = seconds_per_step(config, overrides, 128)
    s_train = seconds_per_step(config, overrides, cfg.task.patch_size)
    steps = max(50, int(budget / s_train))
    run = out_root / name
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    train(str(ROOT / "configs" / f"{config}.yaml"),
          overrides + [f"train.steps={steps}", f"train.checkpoint_every={steps}", f"train.eval_every={steps}",
                       f"train.sample_every={steps}"], run_dir=str(run), progress=False)
    seconds = time.perf_counter() - t0
    result = evaluate(str(run), ["l1", "psnr", "ssim", "checkerboard"])
    grid(run, RESULTS / f"translation_{name}.png")
    task = build_task(cfg, torch.device("cpu"))
    params = sum(p.numel() for p in task.export_module().parameters())
    return {"name": name, "config": config, "overrides": overrides, "dataset": cfg.data.dataset,
            "params": params, "s_per_iter_128": s128, "batch_size": cfg.train.batch_size,
            "train_patch": cfg.task.patch_size, "steps": steps, "train_seconds": seconds,
            "l1": result["l1"], "psnr": result["psnr"], "ssim": result["ssim"],
            "checkerboard": result["checkerboard"], "s_per_iter": s_train, "per_image": result["per_image"]}


def table(rows: list[dict], budget: float) -> str:
    lines = [f"Fixed CPU budget of {budget / 60:.0f} min per model (steps = budget / measured s per step at the "
             "config's crop size, so each schedule completes); holdout images whole (chelsea, coins, flower; "
             "gray2color/photo2poster as documented), L1 in [0, 1] units, PSNR/SSIM on RGB. "
             "photo2poster is unpaired: its scores are against the known true mapping. "
             f"Iteration time: one step of every optimizer on a batch of 128 px crops (median). {machine_line()}.",
             "", "| model | data | params (G) | s/iter @128 px (batch) | steps in budget | holdout L1 | PSNR | SSIM |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['dataset']} | {r['params']:,} | "
                     f"{r['s_per_iter_128']:.3f} ({r['batch_size']}) "
                     f"| {r['steps']:,} | {r['l1']:.4f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    lines += ["", "Grids (input | output | ground truth): "
              + ", ".join(f"[{r['name']}](bench/results/translation_{r['name']}.png)" for r in rows), ""]
    return "\n".join(lines)


def upsample_table(rows: list[dict], budget: float) -> str:
    lines = [f"The generators' upsampler (`model.upsample`) at one equal CPU budget of {budget / 60:.0f} min each "
             "(steps = budget / measured s per step at the config's crop size; everything else the shipped "
             "config's). Holdout images whole; checkerboard = the output's period-2/4 grid energy over the ground "
             f"truth's (1 = the same; genforge/metrics/checkerboard.py). {machine_line()}.", "",
             "| generator | upsample | s/iter (train crops) | steps | holdout L1 | PSNR | SSIM | checkerboard |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base, up = r["name"].split("_up_")
        lines.append(f"| {base} | {up} | {r['s_per_iter']:.3f} | {r['steps']:,} | {r['l1']:.4f} | {r['psnr']:.2f} "
                     f"| {r['ssim']:.4f} | {r['checkerboard']:.2f} |")
    return "\n".join(lines + [""])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=480.0, help="training seconds per model")
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--upsample", action="store_true", help="the upsampler table (pix2pix and cyclegan x "
                   "each model.upsample), written to translation_upsample.md/.json and its README section")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "runs" / "translation"))
    p.add_argument("--table-only", action="store_true", help="rewrite the tables from translation.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from pathlib import Path
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.upsample:
        saved = RESULTS / "translation_upsample.json"
        if args.table_only:
            data = json.loads(saved.read_text())
            rows, budget = data["models"], data["budget"]
        else:
            rows, budget = [], args.budget
            for name in (m for m in MODELS if "_up_" in m):
                rows.append(run_model(name, budget, Path(args.out)))
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_image"}), flush=True)
                saved.write_text(json.dumps({"budget": budget, "models": rows}, indent=2))
        text = upsample_table(rows, budget)
        (RESULTS / "translation_upsample.md").write_text("# Translation: the upsampler\n\n" + text)
        write_readme_section("translation-upsample", text)
        print(text)
        return
    saved = RESULTS / "translation.json"
    if args.table_only:
        data = json.loads(saved.read_text())
        rows, budget = data["models"], data["budget"]
    else:
        rows, budget = [], args.budget
        for name in args.models.split(","):
            rows.append(run_model(name, budget, Path(args.out)))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_image"}), flush=True)
        saved.write_text(json.dumps({"budget": budget, "models": rows}, indent=2))
    text = table(rows, budget)
    (RESULTS / "translation.md").write_text("# Translation benchmark\n\n" + text)
    write_readme_section("translation", text)
    print(text)


if __name__ == "__main__":
    main()
