"""`make demo`: a few minutes on 2 CPU cores that show the whole life cycle on bundled data:
train a small GAN on digits, write sample grids and the FID curve, evaluate, sample the shipped models."""

import json
import time
from pathlib import Path

from genforge.deploy.pretrained import list_models


def plot_curve(metrics_file: Path, out: Path, key: str = "fid") -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    points = [(r["step"], r[key]) for r in map(json.loads, metrics_file.read_text().splitlines())
              if r.get("kind") == "eval" and isinstance(r.get(key), float)]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(*zip(*points), marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel(key.upper() + " (digits features)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def run_demo(out: Path, steps: int = 1500) -> None:
    from genforge.deploy.infer import Generation
    from genforge.evaluate import evaluate, format_table, write_report
    from genforge.train import train
    out.mkdir(parents=True, exist_ok=True)
    config = Path(__file__).resolve().parent.parent / "configs" / "gan_digits.yaml"
    every = max(1, steps // 6)
    print(f"[1/4] training a DCGAN (BCE loss) on the bundled digits for {steps} steps ...")
    t0 = time.time()
    run = train(str(config), [f"train.steps={steps}", f"train.eval_every={every}", f"train.sample_every={every}",
                              f"train.checkpoint_every={every}"], runs_root=str(out / "runs"))
    print(f"      done in {time.time() - t0:.0f} s: {run}")
    print("[2/4] sample grids and FID curve ...")
    grid = Generation(str(run)).save(Generation(str(run)).generate(64), out / "gan_samples.png")
    curve = plot_curve(run / "metrics.jsonl", out / "fid_curve.png")
    print("[3/4] evaluating (FID/KID against the real digits, class coverage) ...")
    result = evaluate(str(run), ["fid", "kid", "coverage"], n=2000)
    print(format_table(result))
    report = write_report(result, str(run), None)
    print("[4/4] sampling the shipped models ...")
    shipped = []
    for m in list_models():
        if m["task"] == "generation":
            gen = Generation(m["name"])
            label = 3 if gen.num_classes else None
            path = out / f"{m['name']}.png"
            gen.save(gen.generate(64, label=label) if label is None else gen.generate(16, label=label), path)
            shipped.append(path)
    print("\noutputs:")
    for p in [grid, curve, report, *shipped, run / "samples", run / "tb"]:
        if p is not None:
            print(f"  {p}")
    print(f"  TensorBoard: tensorboard --logdir {run / 'tb'}")
