"""Export trained super-resolution runs as shipped model folders with measured model cards.

    python scripts/ship_superres.py NAME=RUN_DIR [NAME=RUN_DIR ...]     # e.g. isrnet-x2=/path/to/run

Each card gives the data, the preset and steps, the CPU time read from the run's log, and Set5/Set14
Y-PSNR/SSIM with the published protocol next to bicubic (../shared/benchmarks)."""

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.deploy.pretrained import PRETRAINED_DIR, export_folder, read_source  # noqa: E402
from genforge.engine.logging import cpu_time_text  # noqa: E402
from genforge.deploy.upscaler import evaluate_sr  # noqa: E402

BENCH = ROOT.parent / "shared" / "benchmarks"
TARGETS = {2: 37.0, 4: 30.7}  # Set5 Y-PSNR targets (FSRCNN's published level)


def card(name: str, run: Path, scores: dict, baseline: dict, ensemble: float) -> str:
    cfg = read_source(str(run)).config
    done = int(sorted((run / "checkpoints").glob("step_*.pt"))[-1].stem.split("_")[1])
    planned = cfg["train"]["steps"]
    steps = f"{done} steps" if done >= planned else f"{done} steps of a {planned}-step schedule (stopped early)"
    scale, m, t = cfg["model"]["scale"], cfg["model"], cfg["task"]
    colour = ("RGB" if m["channels"] == 3 else
              "luma: the network upscales Y (BT.601) and chroma is upscaled bicubically, as SRCNN/FSRCNN do")
    lines = [f"# {name}", "",
             f"ISRNet x{scale} ({'adversarially fine-tuned' if t['stage'] == 'gan' else 'pixel loss'}), "
             f"{colour}, {m['width']} channels, {m['levels']} levels. `genforge upscale {name} photo.jpg -o out/`", "",
             "| | |", "|---|---|",
             f"| data | bundled `photos` train split only (10 photos), random {t['patch_size']}px HR patches at scales "
             f"{', '.join(map(str, t['scale_jitter']))}, LR by MATLAB-compatible bicubic |",
             f"| training | `configs/{cfg['name']}.yaml`, {steps}, batch {cfg['train']['batch_size']}, "
             f"{t['pixel_loss']} loss, Adam {t['optim']['learning_rate']} {t['optim']['schedule']} |",
             f"| CPU time | {cpu_time_text(run, cfg['train']['threads'])}"
             f"{' (stage 2 only)' if t['stage'] == 'gan' else ''} |",
             *([f"| stage 2 | from the stage-1 run `{Path(cfg['init']).name}`; trains the {t['finetune']} "
                f"({'encoder frozen' if t['finetune'] == 'decoder' else 'all weights'}); pixel {t['pixel_weight']} + "
                f"{t['adv_loss']} adversarial {t['adv_weight']} + feature matching {t['feature_matching_weight']}, "
                f"spectral-norm discriminator |"] if t["stage"] == "gan" else []),
             "", "| set (Y, protocol of ../shared/benchmarks) | PSNR | SSIM | bicubic PSNR | bicubic SSIM |",
             "|---|---|---|---|---|"]
    for bench in ("Set5", "Set14"):
        s, b = scores[bench], baseline[bench]
        lines.append(f"| {bench} x{scale} | {s['psnr']:.2f} | {s['ssim']:.4f} | {b['psnr']:.2f} | {b['ssim']:.4f} |")
    lines += ["", f"With `--self-ensemble` (the mean of the 8 flipped/rotated outputs): Set5 x{scale} "
                  f"{ensemble:.2f} dB."]
    target = TARGETS.get(scale)
    if target and t["stage"] == "pixel":
        gap = scores["Set5"]["psnr"] - target
        lines += ["", f"Target Set5 x{scale} >= {target} dB: {'met' if gap >= 0 else 'missed'} "
                  f"({gap:+.2f} dB)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    for item in sys.argv[1:]:
        name, run = item.split("=", 1)
        run = Path(run)
        scale = read_source(str(run)).config["model"]["scale"]
        scores, baseline = {}, {}
        ensemble = evaluate_sr(str(run), str(BENCH / "Set5"), scale, self_ensemble=True)["psnr"]
        for bench in ("Set5", "Set14"):
            r = evaluate_sr(str(run), str(BENCH / bench), scale)
            b = evaluate_sr("bicubic", str(BENCH / bench), scale)
            scores[bench] = {"psnr": r["psnr"], "ssim": r["ssim"]}
            baseline[bench] = {"psnr": b["psnr"], "ssim": b["ssim"]}
        out = PRETRAINED_DIR / name
        shutil.rmtree(out, ignore_errors=True)
        export_folder(str(run), out, description=f"ISRNet x{scale} super-resolution",
                      card=card(name, run, scores, baseline, ensemble))
        print(json.dumps({name: scores}))


if __name__ == "__main__":
    main()
