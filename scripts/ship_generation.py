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
    "digits-cgan": ("cgan_digits", 10000, "Class-conditional WGAN-GP DCGAN (label embedding in G, projection "
                                           "critic, gradient penalty; G width 64, critic width 32; EMA weights), "
                                           "16x16 digits; --label 0..9."),
    "digits-vae": ("vae_digits", 8000, "Convolutional VAE decoder for 16x16 digits (latent 16, width 64); "
                   "z is drawn from an 80-component Gaussian mixture (full covariances) fitted after training "
                   "to 5 draws per training digit from the encoder's posteriors (model.latent_prior: gmm), "
                   "not from N(0, I)."),
    "videogan-movingdigits": ("videogan_movingdigits", 12000,
                              "MoCoGAN-style video GAN (content code per clip, GRU motion codes; image and 3D-conv "
                              "video critics, hinge) with `model.motion: translate`: a DCGAN generator draws one "
                              "frame a clip from the content code and the motion codes move it: 16-frame 32x32 "
                              "clips of one moving digit (EMA weights)."),
}
VIDEO_METRICS = ["fid", "kid", "precision", "recall", "identity", "video_fd"]
VIDEO_ROWS = {"fid per frame": "per-frame FID (digits features, all frames vs the holdout clips' frames; real: two "
                               "halves of the holdout)",
              "fid on crops": "FID on the digit crops (a 16-pixel window on the centre of brightness)",
              "precision": "precision (k = 3, one frame a clip, digit crop)", "recall": "recall",
              "identity": "identity consistency (share of clips whose frames the digits classifier puts in one class)",
              "video_fd": "video Frechet distance (VideoNet features, genforge/metrics/video_net.py)"}


def trained_text(run: Path, steps: int) -> str:
    """The steps the run's last checkpoint reached, against the steps it was shipped for."""
    done = int(sorted((run / "checkpoints").glob("step_*.pt"))[-1].stem.split("_")[1])
    return f"{steps} steps" if done >= steps else f"{done} steps of a {steps}-step schedule (stopped early)"


def card(name: str, preset: str, steps: int, desc: str, run: Path, result: dict) -> str:
    cov = result["coverage"]
    trained = trained_text(run, steps)
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


def video_card(name: str, preset: str, steps: int, desc: str, run: Path, result: dict) -> str:
    """The card of a video model: each measure beside real clips scored the same way."""
    cfg = read_source(str(run)).config
    trained = trained_text(run, steps)
    lines = [f"# {name}", "", desc, "",
             "| | |", "|---|---|",
             f"| task | video generation (`genforge sample {name} -n 8 -o clips.gif`) |",
             f"| data | `movingdigits`: {cfg['task']['digits']} scikit-learn digit(s) of "
             f"{cfg['task']['digit_size']} px "
             f"bouncing in a {cfg['model']['image_size']}x{cfg['model']['image_size']} canvas, "
             f"{cfg['model']['frames']} frames (train digit images; holdout: 500 fixed clips of held-out images) |",
             f"| config | `configs/{preset}.yaml`, {trained} |",
             f"| CPU time | {cpu_time_text(run, cfg['train']['threads'])} |", "",
             f"{result['n']} generated clips (seed {result['seed']}) against real clips scored the same way "
             "(real: as many fresh clips of the train digit images, or the holdout halves for FID):", "",
             "| measure | model | real |", "|---|---|---|"]
    for key, label in VIDEO_ROWS.items():
        if key in result["model_vs_real"]:
            row = result["model_vs_real"][key]
            lines.append(f"| {label} | {row['model']:.3f} | {row['real']:.3f} |")
    if "accuracy" in result:
        lines += ["", f"Frames classified as the requested digit (shipped classifier, digit crops): "
                  f"{result['accuracy']:.1%}"]
    lines += ["", "Baselines (a model with no temporal structure, a clip without motion) and the sampling speed: "
              "bench/results/sequences.md. Measured by `genforge eval` with the shipped digits classifier and "
              "VideoNet.", ""]
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
        cfg = read_source(str(run)).config
        video, conditional = cfg["task"]["kind"] == "videogan", cfg["model"].get("num_classes", 0) > 0
        if video:
            result = evaluate(str(run), VIDEO_METRICS + ["accuracy"] * conditional, n=500)
            text = video_card(name, preset, steps, desc, run, result)
        else:
            metrics = ["fid", "kid", "precision", "recall", "pixel_fd", "coverage"]
            metrics += ["accuracy"] * conditional
            result = evaluate(str(run), metrics, n=2000)
            text = card(name, preset, steps, desc, run, result)
        out = PRETRAINED_DIR / name
        shutil.rmtree(out, ignore_errors=True)
        export_folder(str(run), out, description=desc, card=text)
        print(json.dumps({name: result.get("model_vs_real") if video else
                          {k: result[k] for k in ("fid", "fid_real_halves", "coverage_min")} |
                          ({"accuracy": result["accuracy"]} if "accuracy" in result else {})}))


if __name__ == "__main__":
    main()
