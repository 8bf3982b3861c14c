"""Training throughput of presets on this machine: the median of the images/s that the engine logs
every train.log_every steps, the first window (warm-up) left out.

    python bench/train_speed.py configs/lapsrn_x2.yaml configs/gan_digits.yaml --steps 60

Run it with another tree first on PYTHONPATH (PYTHONPATH=/path/to/old/tree python bench/train_speed.py
...) to compare two versions of the engine side by side; the results go to stdout and, with
--out, to a Markdown table."""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path


def throughput(config: str, steps: int, threads: int) -> float:
    from genforge.train import train
    with tempfile.TemporaryDirectory() as tmp:
        run = train(config, [f"train.steps={steps}", "train.log_every=10", f"train.checkpoint_every={steps}",
                             f"train.threads={threads}", "train.eval_every=0", "train.features=none",
                             f"train.sample_every={steps}", "train.device=cpu"],
                    run_dir=str(Path(tmp) / "run"), progress=False)
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in rows if r.get("kind") == "train" and "images_per_s" in r]
    return statistics.median(rates[1:] or rates)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="append a Markdown row per preset to this file")
    args = p.parse_args()
    import genforge
    where = Path(genforge.__file__).resolve().parent.parent
    for config in args.configs:
        rate = throughput(config, args.steps, args.threads)
        line = f"| {Path(config).stem} | {where} | {rate:.1f} |"
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
