"""Export trained super-resolution runs as shipped model folders with measured model cards.

    python scripts/ship_superres.py NAME=RUN_DIR [NAME=RUN_DIR ...]     # e.g. isrnet-x2=/path/to/run

Each card gives the data, the preset and steps, the CPU time read from the run's log, and Set5/Set14/BSD100
Y-PSNR/SSIM with the published protocol next to bicubic (../shared/benchmarks; BSD100 = BSDS500 val in
../shared/datasets, LR made with the project's MATLAB-style bicubic)."""

import functools
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.deploy.pretrained import PRETRAINED_DIR, export_folder, read_source  # noqa: E402
from genforge.engine.logging import cpu_time_text  # noqa: E402
from genforge.deploy.upscaler import evaluate_sr  # noqa: E402

SHARED = ROOT.parent / "shared"
SETS = {"Set5": SHARED / "benchmarks" / "Set5", "Set14": SHARED / "benchmarks" / "Set14",
        "BSD100": SHARED / "datasets" / "BSDS500" / "data" / "images" / "val"}
# Set5 Y-PSNR targets of the BSDS500 issue: VDSR's level for ISRNet, 37.5 dB for the fast model
TARGETS = {("isrnet", 2): 37.6, ("isrnet", 4): 31.2, ("repsr", 2): 37.5}
BSDS = ("BSDS500 train + test (400 photos; P. Arbelaez, M. Maire, C. Fowlkes and J. Malik, \"Contour Detection and "
        "Hierarchical Image Segmentation\", IEEE TPAMI 33(5), 898-916, 2011)")
NETWORKS = {"isrnet": lambda m: f"ISRNet, {m['width']} channels, {m['levels']} levels",
            "repsr": lambda m: (f"RepSR (the fast model), {m['blocks'] + 2} re-parameterised 3x3 convolutions of "
                                f"{m['width']} channels, folded into plain convolutions for inference"),
            "lapsrn": lambda m: f"LapSRN, {m.get('width')} channels"}


def data_text(cfg: dict) -> str:
    spec = cfg["data"]["dataset"]
    if spec.startswith("bsds500:"):
        return BSDS
    if spec == "photos":
        return "bundled `photos` train split only (10 photos)"
    return f"`{spec}`"


def speed_lines(name: str, scale: int) -> list[str]:
    """The model's speed row from bench/results/superres_x{scale}.json (run bench/superres.py first), if any."""
    path = ROOT / "bench" / "results" / f"superres_x{scale}.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    fsrcnn = next((r["speed"]["eager"] for r in rows if r["name"].startswith("FSRCNN (side")), None)
    for r in rows:
        if r["name"] == name and r.get("speed"):
            ratio = f", {r['speed']['eager'] / fsrcnn:.2f}x FSRCNN's measured beside it" if fsrcnn else ""
            return ["", f"Speed (bench/superres.py, network alone, 2 threads): {r['speed']['eager']:.2f} output MPix/s "
                        f"eager, {r['speed']['ort']:.2f} with ONNX Runtime{ratio}."]
    return []


def card(name: str, run: Path, scores: dict, baseline: dict, ensemble: float) -> str:
    cfg = read_source(str(run)).config
    done = int(sorted((run / "checkpoints").glob("step_*.pt"))[-1].stem.split("_")[1])
    planned = cfg["train"]["steps"]
    steps = f"{done} steps" if done >= planned else f"{done} steps of a {planned}-step schedule (stopped early)"
    scale, m, t = cfg["model"]["scale"], cfg["model"], cfg["task"]
    colour = ("RGB" if m["channels"] == 3 else
              "luma: the network upscales Y (BT.601) and chroma is upscaled bicubically, as SRCNN/FSRCNN do")
    lines = [f"# {name}", "",
             f"{NETWORKS[m['name']](m)}, x{scale} "
             f"({'adversarially fine-tuned' if t['stage'] == 'gan' else 'pixel loss'}), "
             f"{colour}. `genforge upscale {name} photo.jpg -o out/`", "",
             "| | |", "|---|---|",
             f"| data | {data_text(cfg)}, random {t['patch_size']}px HR patches at scales "
             f"{', '.join(map(str, t['scale_jitter']))}, LR by MATLAB-compatible bicubic |",
             f"| training | `configs/{cfg['name']}.yaml`, {steps}, batch {cfg['train']['batch_size']}, "
             f"{t['pixel_loss']} loss, Adam {t['optim']['learning_rate']} {t['optim']['schedule']} |",
             f"| CPU time | {cpu_time_text(run, cfg['train']['threads'])}"
             f"{' (stage 2 only)' if t['stage'] == 'gan' else ''} |",
             *([f"| stage 2 | from the stage-1 run `{Path(cfg['init']).name}`; trains the {t['finetune']} "
                f"({'encoder frozen' if t['finetune'] == 'decoder' else 'all weights'}); pixel {t['pixel_weight']} + "
                f"{t['adv_loss']} adversarial {t['adv_weight']} + feature matching {t['feature_matching_weight']}, "
                f"spectral-norm discriminator |"] if t["stage"] == "gan" else []),
             *([f"| init | continued from the run `{Path(cfg['init']).name}` with a new schedule (CPU time: this run "
                f"only) |"] if t["stage"] == "pixel" and cfg.get("init") else []),
             "", "| set (Y, protocol of ../shared/benchmarks) | PSNR | SSIM | detail | bicubic PSNR | bicubic SSIM "
             "| bicubic detail |", "|---|---|---|---|---|---|---|"]
    for bench in scores:
        s, b = scores[bench], baseline[bench]
        lines.append(f"| {bench} x{scale} | {s['psnr']:.2f} | {s['ssim']:.4f} | {s['detail']:.2f} | {b['psnr']:.2f} "
                     f"| {b['ssim']:.4f} | {b['detail']:.2f} |")
    lines += ["", "detail: Laplacian energy of the output over the ground truth's (1 = as much fine detail; blur < 1; "
                  "it counts detail, not correct detail)."]
    lines += ["", f"With `--self-ensemble` (the mean of the 8 flipped/rotated outputs): Set5 x{scale} "
                  f"{ensemble:.2f} dB."]
    lines += speed_lines(name, scale)
    target = TARGETS.get((m["name"], scale))
    if target and t["stage"] == "pixel":
        gap = scores["Set5"]["psnr"] - target
        lines += ["", f"Target Set5 x{scale} >= {target} dB: {'met' if gap >= 0 else 'missed'} "
                  f"({gap:+.2f} dB)."]
    return "\n".join(lines) + "\n"


KEYS = ("psnr", "ssim", "detail")


@functools.cache
def bicubic_scores(path: str, scale: int) -> dict:
    """Bicubic on one set: the same for every model of a scale, so measured once per invocation."""
    result = evaluate_sr("bicubic", path, scale)
    return {k: result[k] for k in KEYS}


def main() -> None:
    for item in sys.argv[1:]:
        name, run = item.split("=", 1)
        run = Path(run)
        scale = read_source(str(run)).config["model"]["scale"]
        scores, baseline = {}, {}
        ensemble = evaluate_sr(str(run), str(SETS["Set5"]), scale, self_ensemble=True)["psnr"]
        for bench, path in SETS.items():
            if not path.is_dir():
                print(f"{bench} not found at {path}: not in the card", file=sys.stderr)
                continue
            r = evaluate_sr(str(run), str(path), scale)
            scores[bench] = {k: r[k] for k in KEYS}
            baseline[bench] = bicubic_scores(str(path), scale)
        out = PRETRAINED_DIR / name
        shutil.rmtree(out, ignore_errors=True)
        network = read_source(str(run)).config["model"]["name"]
        label = {"isrnet": "ISRNet", "repsr": "RepSR (fast)", "lapsrn": "LapSRN"}[network]
        export_folder(str(run), out, description=f"{label} x{scale} super-resolution",
                      card=card(name, run, scores, baseline, ensemble))
        print(json.dumps({name: scores}))


if __name__ == "__main__":
    main()
