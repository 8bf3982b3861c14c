"""Train (or reuse) and export the shipped generation models with measured model cards.

    python scripts/ship_generation.py --runs /path/to/runs [--only digits-wgangp]

Each model is trained by its preset in configs/ (the step count below), evaluated with the shipped
digits classifier and features, and written to genforge/pretrained/<name>/ as a model folder."""

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.deploy.pretrained import PRETRAINED_DIR, export_folder, read_source  # noqa: E402
from genforge.engine.logging import cpu_time_text  # noqa: E402
from genforge.evaluate import evaluate  # noqa: E402
from genforge.train import train  # noqa: E402

SHIPPED = {
    "digits-wgangp": ("wgangp_digits", 40000, "WGAN-GP DCGAN generator for 16x16 digits (EMA weights; G width 64, "
                                              "critic width 32)."),
    "digits-cgan": ("cgan_digits", 4000, "Class-conditional DCGAN (label embedding in G, projection D, hinge), "
                                          "16x16 digits; --label 0..9."),
    "digits-vae": ("vae_digits", 4000, "Convolutional VAE decoder for 16x16 digits (latent 16)."),
}


def card(name: str, preset: str, steps: int, desc: str, run: Path, result: dict) -> str:
    cov = result["coverage"]
    done = int(sorted((run / "checkpoints").glob("step_*.pt"))[-1].stem.split("_")[1])
    trained = f"{steps} steps" if done >= steps else f"{done} steps of a {steps}-step schedule (stopped early)"
    lines = [f"# {name}", "", desc, "",
             "| | |", "|---|---|",
             f"| task | generation (`genforge sample {name} -n 64 -o grid.png`) |",
             "| data | bundled `digits` (scikit-learn, 1,797 images, 8x8 resized to 16x16) |",
             f"| config | `configs/{preset}.yaml`, {trained} |",
             f"| CPU time | {cpu_time_text(run, read_source(str(run)).config['train']['threads'])} |",
             f"| FID (digits features, 2,000 samples vs real) | {result['fid']:.3f} |",
             f"| FID between two halves of the real digits | {result['fid_real_halves']:.3f} |",
             f"| FID ratio to real halves | {result['fid'] / result['fid_real_halves']:.1f}x |",
             f"| KID | {result['kid']:.4f} +- {result['kid_std']:.4f} |",
             f"| smallest class share (shipped classifier) | {result['coverage_min']:.1%} |",
             f"| precision / recall (k = 3, digits features; real halves {result['precision_real_halves']:.3f} / "
             f"{result['recall_real_halves']:.3f}) | {result['precision']:.3f} / {result['recall']:.3f} |",
             f"| pixel FD (8x8 pixels, 20 principal axes; real halves {result['pixel_fd_real_halves']:.4f}) | "
             f"{result['pixel_fd']:.4f} |",
             "", "Class shares: " + ", ".join(f"{k}: {v:.1%}" for k, v in cov.items())]
    if "accuracy" in result:
        lines += ["", f"Samples classified as the requested label: {result['accuracy']:.1%} (per label: "
                  + ", ".join(f"{k}: {v:.1%}" for k, v in result["accuracy_per_label"].items()) + ")"]
    lines += ["", "Measured by `genforge eval` with the shipped digits classifier "
              "(genforge/metrics/weights, 99.7% holdout accuracy).", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", required=True, help="where the training runs are (reused when complete)")
    p.add_argument("--only", help="comma list of model names")
    p.add_argument("--as-is", action="store_true", help="export the latest checkpoint, even before the last step")
    args = p.parse_args()
    for name, (preset, steps, desc) in SHIPPED.items():
        if args.only and name not in args.only.split(","):
            continue
        run = Path(args.runs) / name
        if not args.as_is and not (run / "checkpoints" / f"step_{steps:08d}.pt").exists():
            resume = str(run) if (run / "config.yaml").exists() else None
            train(None if resume else str(ROOT / "configs" / f"{preset}.yaml"), [f"train.steps={steps}"],
                  resume=resume, run_dir=None if resume else str(run), progress=False)
        metrics = ["fid", "kid", "precision", "recall", "pixel_fd", "coverage"]
        metrics += ["accuracy"] if "cgan" in name else []
        result = evaluate(str(run), metrics, n=2000)
        out = PRETRAINED_DIR / name
        shutil.rmtree(out, ignore_errors=True)
        export_folder(str(run), out, description=desc, card=card(name, preset, steps, desc, run, result))
        print(json.dumps({name: {k: result[k] for k in ("fid", "fid_real_halves", "coverage_min")} |
                          ({"accuracy": result["accuracy"]} if "accuracy" in result else {})}))


if __name__ == "__main__":
    main()
