"""Generation benchmark: gan, wgan, wgangp, vae and cgan on digits, same architecture, same step budget.

Writes bench/results/generation.md (and the README section between the bench markers):
images/s, FID/KID at step 0 and at the end (digits features), mode coverage by the shipped digits
classifier, cgan's requested-label accuracy, and the engine's overhead against a minimal
hand-written PyTorch loop training the same DCGAN on the same data in the same process.

    python bench/generation.py [--steps 2000] [--overhead-steps 200]
"""

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from common import ROOT, write_readme_section  # noqa: E402  (sets up the path and OpenMP first)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from genforge.config import load_config  # noqa: E402
from genforge.data import load_dataset  # noqa: E402
from genforge.engine.batches import EpochBatches  # noqa: E402
from genforge.engine.fit import fit, seed_everything  # noqa: E402
from genforge.evaluate import evaluate  # noqa: E402
from genforge.models.dcgan import Discriminator, Generator  # noqa: E402
from genforge.registry import build_task  # noqa: E402
from genforge.train import train  # noqa: E402

MODELS = ["gan", "wgan", "wgangp", "vae", "cgan"]


def train_and_score(name: str, steps: int, out: Path) -> dict:
    run = out / name
    if not (run / "eval.json").exists():
        t0 = time.perf_counter()
        train(str(ROOT / "configs" / f"{name}_digits.yaml"),
              # one architecture for every model, whatever width a preset ships with
              ["model.width=32", "model.d_width=32",
               f"train.steps={steps}", f"train.eval_every={max(1, steps // 4)}", "train.features=digits",
               f"train.checkpoint_every={steps}", f"train.sample_every={steps}", "train.eval_samples=1000"],
              run_dir=str(run), progress=False)
        seconds = time.perf_counter() - t0
        metrics = ["fid", "kid", "coverage"] + (["accuracy"] if name == "cgan" else [])
        result = evaluate(str(run), metrics, n=2000)
        result["train_seconds"] = seconds
        (run / "eval.json").write_text(json.dumps(result, indent=2))
    result = json.loads((run / "eval.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r.get("kind") == "eval"]
    speed = [r["images_per_s"] for r in rows if r.get("kind") == "train"]
    return {"name": name, "images_per_s": statistics.median(speed), "fid0": evals[0]["fid"],
            "fid": result["fid"], "kid": result["kid"], "fid_ref": result["fid_real_halves"],
            "coverage": result["coverage"], "coverage_min": result["coverage_min"],
            "accuracy": result.get("accuracy"), "seconds": result["train_seconds"]}


def hand_written_loop(cfg, data, steps: int) -> float:
    """The same DCGAN, data order and BCE updates as the engine, with nothing else."""
    seed_everything(cfg.seed)
    G, D = Generator(cfg.model), Discriminator(cfg.model)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batches = EpochBatches(data.images, None, cfg.train.batch_size, seed=cfg.seed, device=torch.device("cpu"))
    t0 = time.perf_counter()
    for step in range(steps):
        real = batches.batch(step)["image"]
        z = torch.randn(len(real), G.latent_dim)
        with torch.no_grad():
            fake = G(z)
        loss_d = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        D.requires_grad_(False)
        loss_g = F.softplus(-D(G(torch.randn(len(real), G.latent_dim)))).mean()
        D.requires_grad_(True)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return time.perf_counter() - t0


def engine_loop(cfg, data, steps: int, run_dir: Path) -> float:
    seed_everything(cfg.seed)
    task = build_task(cfg, torch.device("cpu"))
    batches = EpochBatches(data.images, None, cfg.train.batch_size, seed=cfg.seed, device=torch.device("cpu"))
    t0 = time.perf_counter()
    fit(task, batches, cfg.train, run_dir=run_dir, config=cfg.model_dump(mode="json"), progress=False)
    return time.perf_counter() - t0


def overhead(steps: int, repeats: int, out: Path) -> dict:
    cfg = load_config(ROOT / "configs" / "gan_digits.yaml",
                      [f"train.steps={steps}", "task.ema_decay=0", f"train.checkpoint_every={steps}"])
    data = load_dataset("digits", image_size=cfg.model.image_size, channels=1)
    hand, engine = [], []
    hand_written_loop(cfg, data, 10)  # warm-up: first-call costs belong to neither side
    for i in range(repeats):  # interleaved, alternating who goes first: both see the same load
        run = out / f"overhead-{i}"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        if i % 2:
            engine.append(engine_loop(cfg, data, steps, run))
            hand.append(hand_written_loop(cfg, data, steps))
        else:
            hand.append(hand_written_loop(cfg, data, steps))
            engine.append(engine_loop(cfg, data, steps, run))
    h, e = statistics.median(hand), statistics.median(engine)
    return {"steps": steps, "repeats": repeats, "hand_s": h, "engine_s": e, "overhead": e / h - 1}


def table(rows: list[dict], ov: dict, steps: int) -> str:
    lines = [f"Digits 16x16, DCGAN width 32 (same G/D for every GAN; the VAE's encoder/decoder are the same "
             f"blocks), {steps} steps of batch 64, one seed, 2 CPU cores. FID/KID: shipped digits features, 2,000 "
             f"samples against the 1,797 real digits; FID between two halves of the real data: "
             f"{rows[0]['fid_ref']:.3f}. Coverage: share of samples the shipped classifier puts in each class.",
             "",
             "| model | images/s | train s | FID step 0 | FID end | end/start | KID end | min class share | "
             "classes >= 1% | classes >= 5% | cgan label accuracy |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        present = sum(v >= 0.01 for v in r["coverage"].values())
        covered = sum(v >= 0.05 for v in r["coverage"].values())
        acc = f"{r['accuracy']:.1%}" if r["accuracy"] is not None else ""
        lines.append(f"| {r['name']} | {r['images_per_s']:.0f} | {r['seconds']:.0f} | {r['fid0']:.2f} | "
                     f"{r['fid']:.3f} | {r['fid'] / r['fid0']:.1%} | {r['kid']:.4f} | {r['coverage_min']:.1%} | "
                     f"{present}/10 | {covered}/10 | {acc} |")
    lines += ["", f"Engine overhead against a minimal hand-written loop (same DCGAN, data order and BCE updates, "
              f"{ov['steps']} steps, median of {ov['repeats']} interleaved runs in one process; "
              "the engine side includes "
              f"its logging, TensorBoard writer and final checkpoint): hand-written "
              f"{ov['hand_s']:.2f} s, engine {ov['engine_s']:.2f} s, overhead {ov['overhead']:+.1%} "
              f"(target < 5%)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--overhead-steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "bench" / "runs"))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--table-only", action="store_true", help="rewrite the tables from bench/results/generation.json")
    args = p.parse_args()
    torch.set_num_threads(2)
    results = ROOT / "bench" / "results"
    if args.table_only:
        saved = json.loads((results / "generation.json").read_text())
        text = table(saved["models"], saved["overhead"], saved.get("steps", args.steps))
        (results / "generation.md").write_text("# Generation benchmark\n\n" + text)
        write_readme_section("generation", text)
        print(text)
        return
    out = Path(args.out) / f"generation-{args.steps}"
    rows = [train_and_score(m, args.steps, out) for m in args.models.split(",")]
    ov = overhead(args.overhead_steps, args.repeats, out)
    text = table(rows, ov, args.steps)
    results.mkdir(parents=True, exist_ok=True)
    (results / "generation.md").write_text("# Generation benchmark\n\n" + text)
    summary = {"steps": args.steps, "models": rows, "overhead": ov}
    (results / "generation.json").write_text(json.dumps(summary, indent=2))
    write_readme_section("generation", text)
    print(text)


if __name__ == "__main__":
    main()
