"""Sequence models: the text table (holdout bits per character of the unigram and Kneser-Ney n-gram
baselines and of the given models, training tokens/s from their runs, sampling bytes/s with and without
the key/value cache). Video generation rows join this table when that family exists.

    python bench/sequences.py --text chargpt-pydoc=runs/chargpt_pydoc

Writes bench/results/sequences.md and .json and the README section."""

import argparse
import json
import statistics
import time
from pathlib import Path

from common import RESULTS, machine_line, write_readme_section  # noqa: E402  (path and OpenMP first)

import torch  # noqa: E402

import genforge  # noqa: E402
from genforge.deploy.pretrained import read_source  # noqa: E402

PROMPT = b"A class definition"


def training_tokens_per_s(model: str) -> float | None:
    """Median training throughput of a run (its log's images_per_s x the context), if it is a run."""
    log = Path(model) / "metrics.jsonl"
    if not log.is_file():
        return None
    block = read_source(model).config["model"]["block_size"]
    rates = [json.loads(line).get("images_per_s") for line in log.read_text().splitlines() if '"train"' in line]
    rates = [r for r in rates if r]
    return statistics.median(rates) * block if rates else None


def sampling(model, use_cache: bool, tokens: int = 256, repeats: int = 3) -> float:
    start = torch.tensor([list(PROMPT)])
    times = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        model.module.generate(start, tokens, generator=torch.Generator().manual_seed(seed), use_cache=use_cache)
        times.append(time.perf_counter() - t0)
    return tokens / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", action="append", default=[], metavar="NAME=PATH", help="text model (run or folder)")
    args = p.parse_args()
    torch.set_num_threads(2)
    rows, baselines = [], None
    for item in args.text:
        name, path = item.split("=", 1)
        model = genforge.load(path, device="cpu")
        scores = model.evaluate(["bpc", "ngram"])
        baselines = baselines or {k[len("baseline_"):]: v for k, v in scores.items() if k.startswith("baseline_")}
        m = model.source.config["model"]
        params = sum(v.numel() for v in model.source.state.values())
        rows.append({"name": name, "path": path, "bpc": scores["bpc"], "params": params,
                     "shape": f"{m['layers']} x {m['width']}, context {m['block_size']}",
                     "train_tokens_s": training_tokens_per_s(path), "sample_cache": sampling(model, True),
                     "sample_nocache": sampling(model, False), "dataset": scores["dataset"],
                     "holdout_chars": scores["holdout_chars"]})
        print(json.dumps(rows[-1]))
    if not rows:
        p.error("give at least one --text model")
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
        tps = f"{r['train_tokens_s']:,.0f}" if r["train_tokens_s"] else "-"
        lines.append(f"| {r['name']} ({r['shape']}) | {r['bpc']:.3f} | {r['bpc'] - orders[best]:+.3f} | "
                     f"{r['params']:,} | {tps} | {r['sample_cache']:.0f} | {r['sample_nocache']:.0f} |")
    text = "**Text generation**\n\n" + "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sequences.md").write_text("# Sequences\n\n" + text)
    (RESULTS / "sequences.json").write_text(json.dumps({"text": rows, "baselines": baselines}, indent=2))
    print(text)
    write_readme_section("sequences", text)


if __name__ == "__main__":
    main()
