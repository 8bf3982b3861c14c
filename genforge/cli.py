"""Command line: an explicit table of the shared commands -> functions, then each registered
family's own commands (InferenceWrapper.add_commands: sample, upscale, eval-sr, translate, ...).

User mistakes (UserError) print one line and exit non-zero; anything else is a bug and keeps
its traceback."""

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from genforge.errors import UserError


def cmd_datasets(args) -> int:
    from genforge.data import list_datasets
    rows = [(d["name"], str(d["images"]), d["size"], str(d["channels"]), "yes" if d["labels"] else "no",
             d["description"]) for d in list_datasets()]
    _table(("name", "images", "size", "channels", "labels", "description"), rows)
    print("also: folder:PATH (any image folder, recursive; class sub-folders with data.class_folders)")
    print("      bsds500:PATH (the Berkeley photos, e.g. bsds500:../shared/datasets/BSDS500; splits train = train + "
          "test folders, 400 photos; val = BSD100; all)")
    print("      photo2poster:PATH (photo2poster with BSDS500's 400 train photos at PATH added to its two domains; "
          "the bundled holdout)")
    print("      text:PATH (a UTF-8 file or folder of .txt/.md/.rst/.py for text models; holdout: the last 10% of "
          "each file)")
    return 0


def cmd_models(args) -> int:
    from genforge.deploy.pretrained import list_models
    models = list_models()
    _table(("name", "task", "network", "description"),
           [(m["name"], m["task"], m["model"], m["description"]) for m in models])
    return 0


def cmd_train(args) -> int:
    from genforge.engine.fit import Interrupted
    from genforge.train import train
    try:
        out = train(args.config, args.set or [], resume=args.resume, run_dir=args.run_dir,
                    runs_root=args.runs, progress=not args.no_progress)
    except Interrupted as stop:
        print(f"interrupted at step {stop.step}; checkpoint written: {stop.path}\n"
              f"continue with: genforge train --resume {stop.path.parent.parent if stop.path else '<run>'}",
              file=sys.stderr)
        return 128 + int(stop.signum)
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {out}")
    return 0


def cmd_eval(args) -> int:
    from genforge.evaluate import evaluate, format_table, parse_metrics, write_report
    metrics = parse_metrics(args.metrics)
    result = evaluate(args.model, metrics, n=args.n, features=args.features, seed=args.seed)
    print(format_table(result, summary=args.summary))
    print(f"wrote {write_report(result, args.model, args.output)}")
    return 0


def cmd_export(args) -> int:
    if args.format == "onnx":
        from genforge.deploy.export import export_onnx
        if args.description or args.card:
            raise UserError("--description and --card apply to --format folder only")
        result = export_onnx(args.model, args.output, opset=args.opset)
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in result["max_abs_diff"].items())
        print(f"wrote ONNX model {result['path']} (opset {result['opset']}); "
              f"ONNX Runtime vs PyTorch max abs difference: {diffs}")
        return 0
    from genforge.deploy.pretrained import export_folder
    card = Path(args.card).read_text() if args.card else None
    out = export_folder(args.model, args.output, description=args.description, card=card, half=args.half)
    print(f"wrote model folder {out}")
    return 0


def cmd_serve(args) -> int:
    from genforge.deploy.serve import Limits, serve
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if not names:
        raise UserError("--models needs at least one model name or folder")
    limits = Limits(max_upload_bytes=args.max_upload_bytes, max_pixels=args.max_pixels, timeout=args.timeout,
                    read_timeout=args.read_timeout, concurrency=args.concurrency, queue=args.queue)
    serve(names, host=args.host, port=args.port, limits=limits, device=args.device, threads=args.threads)
    return 0


def cmd_demo(args) -> int:
    from genforge.demo import run_demo
    run_demo(Path(args.output), steps=args.steps)
    return 0


def _table(header, rows) -> None:
    rows = [tuple(header)] + [tuple(r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genforge", description="Train, evaluate and deploy generative image models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("datasets", help="list bundled datasets")
    s.set_defaults(func=cmd_datasets)
    s = sub.add_parser("models", help="list shipped pretrained models")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("train", help="train from a YAML config")
    s.add_argument("config", nargs="?", help="YAML preset (optional with --resume)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.steps=500")
    s.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    s.add_argument("--run-dir", help="run directory (default: runs/<name>-<time>)")
    s.add_argument("--runs", default="runs", help="parent of new run directories")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    from genforge.evaluate import metrics_help
    what = ("score a model with its family's metrics (generators: FID/KID, coverage, accuracy; translation: "
            "L1/PSNR/SSIM/checkerboard on the holdout images; frame interpolation: PSNR/SSIM on holdout triplets; "
            "super-resolution: see genforge eval-sr)")
    s = sub.add_parser("eval", help=what, description=what)
    s.add_argument("model", help="shipped model name, model folder or run directory")
    s.add_argument("--metrics", default=None, help=f"comma list of metrics; by model family: {metrics_help()}")
    s.add_argument("--summary", action="store_true", help="print only the means, not a row per image (the "
                                                          "report file still holds every row)")
    s.add_argument("-n", type=int, default=2000, help="generated samples (interpolation: at most N triplets a set)")
    s.add_argument("--features", default="auto", help="feature network: digits, torchscript:PATH, inception:WEIGHTS")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-o", "--output", help="report path (default: RUN_DIR/eval.json or ./eval.json)")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("export", help="write a model folder (config.json, model.safetensors, README.md) "
                                      "or an ONNX file")
    s.add_argument("model", help="run directory, checkpoint or model")
    s.add_argument("-o", "--output", required=True, help="output folder (or .onnx file with --format onnx)")
    s.add_argument("--format", choices=("folder", "onnx"), default="folder",
                   help="folder: config.json + model.safetensors + README.md; onnx: one .onnx file, "
                        "checked against PyTorch with ONNX Runtime")
    s.add_argument("--opset", type=int, default=17, help="ONNX opset (--format onnx)")
    s.add_argument("--description", default="")
    s.add_argument("--card", help="Markdown model card to use as README.md")
    s.add_argument("--half", action="store_true", help="store the weights as float16 (half the size; "
                                                       "loaded as float32)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("serve", help="HTTP service and web page for generation and upscaling")
    s.add_argument("--models", required=True, metavar="NAME[,NAME...]",
                   help="comma list of shipped model names, model folders or run directories")
    s.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it: no auth)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-upload-bytes", type=int, default=20 * 1024 * 1024, help="larger uploads get 413")
    s.add_argument("--max-pixels", type=int, default=4_000_000, help="larger input images get 413")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds per request before 504 (waiting included; "
                                                              "tiled work stops at its next tile)")
    s.add_argument("--read-timeout", type=float, default=20.0, help="seconds a client has to send the headers and "
                                                                   "the whole body; then 408 and the connection closes")
    s.add_argument("--concurrency", type=int, default=2, help="model calls running at once")
    s.add_argument("--queue", type=int, default=32, help="requests that may wait; more get 503 + Retry-After")
    s.add_argument("--threads", type=int, default=0, help="torch threads per model call (0 = cores / concurrency)")
    s.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("demo", help="train a small GAN on digits and show what genforge does")
    s.add_argument("-o", "--output", default="demo_out")
    s.add_argument("--steps", type=int, default=1500)
    s.set_defaults(func=cmd_demo)

    # each family's own commands (sample, upscale, eval-sr, translate, ...), from its wrapper
    from genforge import registry
    for row in registry.wrappers().values():
        row.wrapper.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads that spin while waiting make a shared or oversubscribed CPU several times
    # slower; passive waiting costs little when the cores are free. Must precede importing torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("PIL").setLevel(logging.CRITICAL)  # its decoder notes would be a second line per bad file
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        target = getattr(args, "leftover_inputs", None)
        if target is None or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        setattr(args, target, [*getattr(args, target), *extra])
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
