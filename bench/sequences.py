"""Sequence models: the text table (holdout bits per character of the unigram and Kneser-Ney n-gram
baselines and of the given models, training tokens/s from their runs, sampling bytes/s with and without
the key/value cache; for a run of the adversarial stage, task.stage seqgan, the row "after the adversarial
stage"), and the sample table (word n-gram overlap with the holdout and distinct-n of each model's sampled
continuations, beside real training text's); and the video table (per-frame FID, precision/recall, identity
consistency and the video Frechet distance of real holdout clips, of two baselines made from them and of a
video model, genforge/metrics/video_net.py).

    python bench/sequences.py --text chargpt-pydoc=runs/chargpt_pydoc --text chargpt-pydoc=runs/chargpt_seqgan
    python bench/sequences.py --video --threads 1                     # real clips and the two baselines
    python bench/sequences.py --video-model videogan-movingdigits=runs/videogan_movingdigits

Writes bench/results/sequences.md and .json and the README section; a part not run keeps its last table."""

import argparse
import json
import re
import statistics
import time
from pathlib import Path

from common import RESULTS, machine_line, write_readme_section  # noqa: E402  (path and OpenMP first)

import torch  # noqa: E402

import genforge  # noqa: E402
from genforge.deploy.pretrained import read_source  # noqa: E402

PROMPT = b"A class definition"
CLIPS = 500  # per video row, and in the reference set (the movingdigits holdout has 500 clips)
HEADINGS = {"text": "**Text generation**", "video": "**Video generation**"}


def training_tokens_per_s(model: str) -> tuple[float | None, str]:
    """Training throughput and how it was measured: a run's median (its log's images_per_s x the context),
    or for a model folder its whole training (steps x batch x context over the minutes it records, the
    evaluations included, so lower)."""
    source = read_source(model)
    block = source.config["model"]["block_size"]
    log = Path(model) / "metrics.jsonl"
    if not log.is_file():
        training = source.training or {}
        if not training.get("elapsed_min"):
            return None, ""
        tokens = training["step"] * source.config["train"]["batch_size"] * block
        return tokens / (60 * training["elapsed_min"]), " (whole run)"
    rates = [json.loads(line).get("images_per_s") for line in log.read_text().splitlines() if '"train"' in line]
    rates = [r for r in rates if r]
    return (statistics.median(rates) * block, "") if rates else (None, "")


def sampling(model, use_cache: bool, tokens: int = 256, repeats: int = 3) -> float:
    start = torch.tensor([list(PROMPT)])
    times = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        model.module.generate(start, tokens, generator=torch.Generator().manual_seed(seed), use_cache=use_cache)
        times.append(time.perf_counter() - t0)
    return tokens / statistics.median(times)


def text_section(models: list[str]) -> tuple[str, dict]:
    rows, baselines = [], None
    for item in models:
        name, path = item.split("=", 1)
        model = genforge.load(path, device="cpu")
        scores = model.evaluate(["bpc", "ngram", "samples"])
        stage = (model.source.config.get("task") or {}).get("stage", "pretrain")
        baselines = baselines or {k[len("baseline_"):]: v for k, v in scores.items() if k.startswith("baseline_")}
        m = model.source.config["model"]
        params = sum(v.numel() for v in model.source.state.values())
        rows.append({"name": name + (" after the adversarial stage (SeqGAN)" if stage == "seqgan" else ""),
                     "stage": stage, "samples": scores["sample_ngrams"], "path": path, "bpc": scores["bpc"],
                     "params": params,
                     "shape": f"{m['layers']} x {m['width']}, context {m['block_size']}",
                     "train_tokens_s": training_tokens_per_s(path) if stage == "pretrain" else (None, ""),
                     "sample_cache": sampling(model, True),
                     "sample_nocache": sampling(model, False), "dataset": scores["dataset"],
                     "holdout_chars": scores["holdout_chars"]})
        print(json.dumps(rows[-1]))
    best = baselines["best_ngram"]
    orders = {k: v for k, v in baselines.items() if k.startswith("kn")}
    lines = [f"Holdout bits per character (lower is better) on `{rows[0]['dataset']}` ({rows[0]['holdout_chars']:,} "
             "characters: whole topics never trained on), every byte scored given the bytes before it (the model in "
             "windows of its context, the n-grams with their order). Baselines computed by the project on the same "
             "split (`genforge/metrics/ngram.py`). Sampling: one sequence of 256 bytes, median of 3. "
             f"{machine_line()}.", "",
             "| model | bpc | vs best n-gram | params | training tokens/s | sampling bytes/s (KV cache) | "
             "sampling bytes/s (no cache) |", "|---|---|---|---|---|---|---|",
             f"| unigram (add-one) | {baselines['unigram']:.3f} | | | | | |"]
    for key, value in sorted(orders.items(), key=lambda kv: int(kv[0][2:])):
        lines.append(f"| Kneser-Ney order {key[2:]}{' (best)' if key == best else ''} | {value:.3f} | | | | | |")
    for r in rows:
        rate, how = r["train_tokens_s"]
        tps = f"{rate:,.0f}{how}" if rate else "-"
        lines.append(f"| {r['name']} ({r['shape']}) | {r['bpc']:.3f} | {r['bpc'] - orders[best]:+.3f} | "
                     f"{r['params']:,} | {tps} | {r['sample_cache']:.0f} | {r['sample_nocache']:.0f} |")
    orders_n = (1, 2, 3, 4)
    lines += ["", "Samples: 32 continuations of 256 bytes (prompts: 32 holdout bytes at evenly spread places; "
              "temperature 1, no top-k; seed 0) against as many 256-byte windows of the training text: the share "
              "of their word n-grams found in the holdout (overlap) and distinct n-grams over all (distinct-n).", "",
              "| text | " + " | ".join(f"overlap {n}" for n in orders_n) + " | "
              + " | ".join(f"distinct-{n}" for n in orders_n) + " |", "|---" * (1 + 2 * len(orders_n)) + "|"]
    for label, scores in [("real training text", rows[0]["samples"]["real_text"])] + \
            [(r["name"], r["samples"]["model"]) for r in rows]:
        lines.append(f"| {label} | " + " | ".join(f"{scores[f'{m}{n}']:.3f}" for m in ("overlap", "distinct")
                                                  for n in orders_n) + " |")
    return HEADINGS["text"] + "\n\n" + "\n".join(lines) + "\n", {"text": rows, "baselines": baselines}


VIDEO_CONFIG = {"data": {"dataset": "movingdigits"}, "model": {"image_size": 32, "frames": 16, "channels": 1},
                "task": {"digit_size": 16, "digits": 1}}  # configs/videogan_movingdigits.yaml's clips


def video_section(models: list[str]) -> tuple[str, dict]:
    """Every row: CLIPS clips against CLIPS fresh real clips of the train digit images; one row per model
    (NAME=PATH, a run or a folder), all of one clip shape."""
    from genforge.data.movingdigits import holdout_clips
    from genforge.metrics.video_net import VideoScorer, train_clips, video_baselines
    loaded = {}
    for model in models:
        name, path = model.split("=", 1) if "=" in model else (model, model)
        loaded[name] = genforge.load(path, device="cpu")
    configs = [video.source.config for video in loaded.values()] or [VIDEO_CONFIG]
    cfg = configs[0]
    m, t = cfg["model"], cfg["task"]
    shape = [(c["model"]["image_size"], c["model"]["frames"], c["task"]["digit_size"], c["task"]["digits"])
             for c in configs]
    if len(set(shape)) > 1:
        raise SystemExit(f"error: the video models draw clips of different shapes {shape}: one table takes one")
    t0 = time.perf_counter()
    scorer = VideoScorer(train_clips(cfg, CLIPS, seed=0), digit_size=t["digit_size"], digits=t["digits"])
    real = holdout_clips(m["image_size"], m["frames"], t["digit_size"], t["digits"])[0][:CLIPS]
    rows = {f"real holdout{'' if k == 'real' else ': ' + k}": v for k, v in video_baselines(scorer, real).items()}
    for name, video in loaded.items():
        start = time.perf_counter()
        clips = video.generate(CLIPS, seed=0)  # a conditional model: random labels
        rows[name] = {**scorer(clips), "clips_s": CLIPS / (time.perf_counter() - start)}
    seconds = time.perf_counter() - t0
    for row, scores in rows.items():
        print(json.dumps({"row": row, **scores}))
    floor = rows["real holdout"]["video_fd"]
    digits = "one" if t["digits"] == 1 else "two"
    lines = [f"Moving digits ({digits} {t['digit_size']}-pixel digit{'s' * (digits == 'two')} in a {m['image_size']}x"
             f"{m['image_size']} canvas, {m['frames']} frames). Every row is {CLIPS} clips scored against {CLIPS} "
             "fresh real clips of the train digit images (fixed seed): per-frame FID in the digits features (all "
             "frames), precision and recall (one frame a clip; the digit crop for one-digit clips), identity "
             "consistency (the share of clips whose frames the digits classifier puts in one class), the video "
             "Frechet distance in the features of VideoNet, a 3D-conv network trained on the train digit images to "
             "tell which digit moves and its velocity (`genforge/metrics/video_net.py`). The baselines are made from "
             "the real holdout clips: independent frames (frame t of each clip taken from frame t of another holdout "
             "clip: perfect frames, no temporal model) and repeated frame (one holdout frame for the whole clip: no "
             f"motion). {machine_line()}; the table took {seconds:.0f} s.", "",
             "| clips | per-frame FID | precision | recall | identity | video FD | video FD / real holdout | "
             "sampling clips/s |", "|---|---|---|---|---|---|---|---|"]
    for row, r in rows.items():
        speed = f"{r['clips_s']:.0f}" if "clips_s" in r else ""
        lines.append(f"| {row} | {r['fid']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['identity']:.3f} | "
                     f"{r['video_fd']:.2f} | {r['video_fd'] / floor:.1f}x | {speed} |")
    return HEADINGS["video"] + "\n\n" + "\n".join(lines) + "\n", {"video": rows}


def previous_sections() -> dict[str, str]:
    """The tables of the last run, by part, from bench/results/sequences.md."""
    path = RESULTS / "sequences.md"
    body = path.read_text().removeprefix("# Sequences\n\n") if path.is_file() else ""
    chunks = re.split(r"(?m)^(?=\*\*(?:Text|Video) generation\*\*$)", body)
    return {part: chunk.rstrip("\n") + "\n" for chunk in chunks for part, h in HEADINGS.items()
            if chunk.startswith(h)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", action="append", default=[], metavar="NAME=PATH", help="text model (run or folder)")
    p.add_argument("--video", action="store_true", help="the video table: real holdout clips and the baselines")
    p.add_argument("--video-model", action="append", default=[], metavar="NAME=PATH",
                   help="a video model (run or folder): a model row of the video table (implies --video; repeat it)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if not args.text and not (args.video or args.video_model):
        p.error("give at least one --text model, or --video")
    torch.set_num_threads(args.threads)
    sections = previous_sections()
    path = RESULTS / "sequences.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    for part, wanted, make in (("text", args.text, lambda: text_section(args.text)),
                               ("video", args.video or args.video_model, lambda: video_section(args.video_model))):
        if wanted:
            sections[part], values = make()
            data.update(values)
            print(sections[part])
    text = "\n".join(sections[part] for part in HEADINGS if part in sections)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sequences.md").write_text("# Sequences\n\n" + text)
    path.write_text(json.dumps(data, indent=2))
    write_readme_section("sequences", text)


if __name__ == "__main__":
    main()
