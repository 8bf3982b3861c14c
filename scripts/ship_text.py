"""Export a trained text run as a shipped model folder with a measured card.

    python scripts/ship_text.py chargpt-pydoc=runs/chargpt_pydoc

The card gives the data and split, the network, the steps and CPU time from the run's log, holdout bits
per character beside the unigram and Kneser-Ney baselines computed on the same split (genforge eval),
sampling speed with and without the key/value cache, and a seeded sample."""

import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import genforge  # noqa: E402
from genforge.deploy.pretrained import PRETRAINED_DIR, export_folder, read_source  # noqa: E402
from genforge.engine.logging import cpu_time_text  # noqa: E402

PROMPT = "A class definition"


def sampling_speed(model, use_cache: bool, tokens: int = 200) -> float:
    start = torch.tensor([list(PROMPT.encode())])
    t0 = time.perf_counter()
    model.module.generate(start, tokens, generator=torch.Generator().manual_seed(0), use_cache=use_cache)
    return tokens / (time.perf_counter() - t0)


def card(name: str, run: Path, scores: dict, speeds: dict, text: str, full: float) -> str:
    cfg = read_source(str(run)).config
    m, t, tr = cfg["model"], cfg["task"], cfg["train"]
    end = next((json.loads(line) for line in reversed((run / "metrics.jsonl").read_text().splitlines())
                if '"kind": "end"' in line), {})
    done = end.get("step") or int(sorted((run / "checkpoints").glob("step_*.pt"))[-1].stem.split("_")[1])
    ended = {"steps": "train.steps", "max_minutes": "train.max_minutes"}.get(end.get("ended_by"), "the run's end")
    params = sum(v.numel() for v in read_source(str(run)).state.values()) - m["block_size"] * m["width"]
    best = scores["baseline_best_ngram"]
    lines = [f"# {name}", "",
             f"CharGPT: a byte-level causal transformer ({m['layers']} pre-norm blocks, width {m['width']}, "
             f"{m['heads']} heads, context {m['block_size']} bytes, tied head; {params / 1e6:.2f} M parameters "
             f"without the position table). `genforge generate-text {name} --prompt \"{PROMPT}\" --tokens 400 "
             "--temperature 0.8 --top-k 40`", "",
             "| | |", "|---|---|",
             "| data | CPython's reference text (`pydoc_data.topics`, Python " + sys.version.split()[0] + "); holdout "
             "= every tenth topic by sorted name, training paragraphs that repeat a holdout paragraph dropped |",
             f"| training | `configs/{cfg['name']}.yaml`, {done} steps of batch {tr['batch_size']} x {m['block_size']} "
             f"bytes ({done * tr['batch_size'] * m['block_size'] / 1e6:.1f} M tokens), ended by {ended}; Adam "
             f"{t['optim']['learning_rate']} {t['optim']['schedule']}, dropout {m['dropout']} |",
             f"| CPU time | {cpu_time_text(run, tr['threads'])} |", "",
             "| model (holdout bits per character, lower is better) | bpc |", "|---|---|",
             f"| unigram (add-one) | {scores['baseline_unigram']:.3f} |"]
    for key in sorted(k for k in scores if k.startswith("baseline_kn")):
        lines.append(f"| Kneser-Ney order {key[len('baseline_kn'):]} | {scores[key]:.3f} |")
    lines += [f"| **{name}** | **{scores['bpc']:.3f}** |", "",
              f"Against the best n-gram ({best}): {scores['bpc'] - scores['baseline_' + best]:+.3f} bits per "
              f"character. Weights stored as float16 (half the size); the float32 run scores {full:.3f}.", "",
              f"Sampling on the CPU (one sequence, 200 bytes): {speeds['cache']:.0f} bytes/s with the key/value cache, "
              f"{speeds['nocache']:.0f} without.", "",
              f"Sample (prompt \"{PROMPT}\", temperature 0.8, top-k 40, seed 0):", "", "```",
              PROMPT + text, "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    torch.set_num_threads(2)
    for item in sys.argv[1:]:
        name, run = item.split("=", 1)
        run = Path(run)
        full = genforge.load(str(run), device="cpu").evaluate(["bpc"])["bpc"]
        out = PRETRAINED_DIR / name
        shutil.rmtree(out, ignore_errors=True)
        export_folder(str(run), out, description="CharGPT byte-level text generator (pydoc)", half=True)
        model = genforge.load(str(out), device="cpu")  # what ships: float16 weights, cast back on load
        scores = model.evaluate(["bpc", "ngram"])
        speeds = {"cache": sampling_speed(model, True), "nocache": sampling_speed(model, False)}
        text = model.generate_text(PROMPT, 400, temperature=0.8, top_k=40, seed=0)
        (out / "README.md").write_text(card(name, run, scores, speeds, text, full))
        print(json.dumps({name: scores, "float32_bpc": full, "speeds": speeds}))


if __name__ == "__main__":
    main()
