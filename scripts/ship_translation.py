"""Export trained translation runs as shipped model folders with measured model cards.

    python scripts/ship_translation.py NAME=RUN_DIR [NAME=RUN_DIR ...]   # e.g. pix2pix-edges2photos=/path/to/run

Each card gives the task, data, preset, steps (and which limit ended the run: train.steps or
train.max_minutes), CPU time and the holdout L1/PSNR/SSIM and checkerboard figure of whole images
against their ground truth (for the unpaired photo2poster: against the known true mapping). The
sheet bench/results/translation_NAME_before_after.png shows input | the model replaced | the new one
| ground truth on the holdout."""

import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.data.builtin_pairs import BUNDLED, POSTER_PREFIX  # noqa: E402
from genforge.demo import translation_sheet  # noqa: E402
from genforge.deploy.translator import Translator  # noqa: E402
from genforge.deploy.pretrained import PRETRAINED_DIR, export_folder, read_source  # noqa: E402
from genforge.engine.logging import cpu_time_text  # noqa: E402
from genforge.evaluate import evaluate  # noqa: E402

USAGE = {
    "pix2pix": "genforge translate {name} edges.png -o out/",
    "cyclegan": "genforge translate {name} photo.png -o out/ [--direction b2a]",
    "spade": "genforge translate {name} labelmap.png -o out/ [--style photo.jpg | --seed 3]",
}
WHAT = {
    "pix2pix": "Pix2Pix (U-Net generator, PatchGAN, GAN + 100 x L1)",
    "cyclegan": "CycleGAN (two ResNet generators, LSGAN, cycle and identity losses, image pools)",
    "spade": "SPADE (spatially-adaptive normalisation, multi-scale PatchGAN, hinge + feature matching)",
}

BSDS500_CITATION = ('P. Arbelaez, M. Maire, C. Fowlkes and J. Malik, "Contour Detection and Hierarchical Image '
                    'Segmentation", IEEE TPAMI 33(5), 2011')


def card(name: str, run: Path, result: dict) -> tuple[str, str]:
    source = read_source(str(run))
    cfg = source.config
    kind, data, m = cfg["task"]["kind"], cfg["data"]["dataset"], cfg["model"]
    done = int(sorted((run / "checkpoints").glob("step_*.pt"))[-1].stem.split("_")[1])
    planned = cfg["train"]["steps"]
    steps = f"{done} steps" if done >= planned else f"{done} steps of a {planned}-step schedule (stopped early)"
    ended = (source.training or {}).get("ended_by")
    if ended == "max_minutes":
        steps += f", ended by train.max_minutes ({cfg['train']['max_minutes']} min)"
    elif ended == "steps":
        steps += ", ended by train.steps"
    params = sum(v.numel() for v in source.state.values())
    extras = ((", identity start (`input_skip`)" if m.get("input_skip") else "")
              + (f", a learned tone curve of {m['tone_curve']} knots" if m.get("tone_curve") else ""))
    if data.startswith("bsds500:"):
        description = f"{WHAT[kind]} trained on BSDS500's human-drawn contours ({BSDS500_CITATION})."
        data_row = ("BSDS500 (`bsds500:PATH`, ../shared/datasets): the annotators' mean contours -> the photo; "
                    "train + test (400 photos) trained on, val (BSD100, 100 photos) held out")
    elif data.startswith(POSTER_PREFIX):
        description = (f"{WHAT[kind]} trained on the bundled photo2poster with BSDS500's train photos added "
                       f"({BSDS500_CITATION}).")
        data_row = ("`photo2poster:PATH` (BSDS500 in ../shared/datasets): the bundled photo2poster's 5 + 5 training "
                    "photos and BSDS500's train + test folders (400 photos), alternately to A (photos) and B (posters "
                    "of the other photos); held out: the bundled holdout photos against posterize")
    else:
        description = f"{WHAT[kind]} trained on the bundled {data}."
        data_row = f"bundled `{data}`: {BUNDLED[data]['description']}"
    truth = "the known true mapping (posterize)" if kind == "cyclegan" else "the paired ground truth"
    lines = [f"# {name}", "", description, "", f"`{USAGE[kind].format(name=name)}`", "",
             "| | |", "|---|---|",
             "| task | image translation |",
             f"| data | {data_row} |",
             f"| network | `{m['name']}`, upsampling `{m.get('upsample', 'transposed')}`{extras}, {params:,} "
             "parameters, stored as float16 (config.json has every setting) |",
             f"| training | `configs/{cfg['name']}.yaml`, {steps}, batch {cfg['train']['batch_size']}, "
             f"{cfg['task']['patch_size']} px crops |",
             f"| CPU time | {cpu_time_text(run, cfg['train']['threads'])} |",
             "", f"Holdout images, whole, against {truth} (L1 in [0, 1] units; PSNR/SSIM on RGB; checkerboard: "
             "period-2/4 grid energy of the output over the ground truth's, 1 = the same, see "
             "genforge/metrics/checkerboard.py):", "",
             "| image | L1 | PSNR | SSIM | checkerboard |", "|---|---|---|---|---|"]
    for img, r in list(result["per_image"].items()) if len(result["per_image"]) <= 10 else []:
        lines.append(f"| {img} | {r['l1']:.4f} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['checkerboard']:.2f} |")
    lines.append(f"| mean of {len(result['per_image'])} | {result['l1']:.4f} | {result['psnr']:.2f} | "
                 f"{result['ssim']:.4f} | {result['checkerboard']:.2f} |")
    if "input_unchanged_psnr" in result:
        lines += ["", f"The input returned unchanged scores L1 {result['input_unchanged_l1']:.4f}, PSNR "
                      f"{result['input_unchanged_psnr']:.2f} dB against the same targets: "
                      "the bar a model has to clear."]
    if "mean_colour_l1" in result:
        lines += ["", "A flat image of the training photos' mean colour scores L1 "
                      f"{result['mean_colour_l1']:.4f}, PSNR {result['mean_colour_psnr']:.2f} dB against the same "
                      "targets: the baseline that knows only the colours."]
    lines += ["", "Measured by `genforge eval <model> --metrics l1,psnr,ssim,checkerboard` on the float32 weights; the "
              "float16 copy shipped here gives the same scores (outputs differ by at most one grey level on the "
              "holdout).", ""]
    return "\n".join(lines), description


def main() -> None:
    for item in sys.argv[1:]:
        name, run = item.split("=", 1)
        run = Path(run)
        result = evaluate(str(run), ["l1", "psnr", "ssim", "checkerboard"])
        text, description = card(name, run, result)
        out = PRETRAINED_DIR / name
        with tempfile.TemporaryDirectory() as tmp:
            before = None
            if (out / "model.safetensors").is_file():  # the model this one replaces, for the before/after sheet
                before = Path(tmp) / name
                shutil.copytree(out, before)
            shutil.rmtree(out, ignore_errors=True)
            export_folder(str(run), out, description=description, card=text, half=True)
            models = [Translator(str(before), device="cpu")] if before else []
            sheet = translation_sheet([*models, Translator(str(out), device="cpu")],
                                      ROOT / "bench" / "results" / f"translation_{name}_before_after.png")
            print(f"{sheet.relative_to(ROOT)}: input | {'before | ' if before else ''}after | ground truth")
        print(json.dumps({name: {k: result[k] for k in ("l1", "psnr", "ssim", "checkerboard")}}))


if __name__ == "__main__":
    main()
