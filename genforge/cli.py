"""Command line: an explicit table of commands -> functions.

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


def cmd_sample(args) -> int:
    from genforge.data.grid import save_grid
    from genforge.data.io import write_image
    from genforge.deploy.generator import Generation
    if args.n < 1 or args.n > 100_000:
        raise UserError("-n must be between 1 and 100000")
    gen = Generation(args.model, device=args.device)
    out = Path(args.output)
    if args.interpolate:
        if args.interpolate < 2:
            raise UserError("--interpolate needs at least 2 steps")
        images = gen.interpolate(args.rows, args.interpolate, label=args.label, seed=args.seed)
        nrow = args.interpolate
    else:
        images = gen.generate(args.n, label=args.label, seed=args.seed)
        nrow = args.nrow
    if args.output.endswith(("/", "\\")) or out.is_dir():
        from genforge.data.grid import to_uint8
        for i, img in enumerate(images):
            write_image(out / f"sample_{i:05d}.png", to_uint8((img + 1) / 2))
        print(f"wrote {len(images)} images to {out}/")
    else:
        if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"):
            raise UserError(f"-o {out}: give an image file name (.png) or a folder ending in /")
        save_grid(images, out, nrow=nrow)
        print(f"wrote {out} ({len(images)} samples)")
    return 0


def cmd_eval(args) -> int:
    from genforge.evaluate import evaluate, format_table, parse_metrics, write_report
    metrics = parse_metrics(args.metrics)
    result = evaluate(args.model, metrics, n=args.n, features=args.features, seed=args.seed)
    print(format_table(result))
    print(f"wrote {write_report(result, args.model, args.output)}")
    return 0


def cmd_upscale(args) -> int:
    from genforge.deploy.files import process_files
    from genforge.deploy.upscaler import Upscaler
    if args.tile and args.tile < 16:
        raise UserError("--tile must be 0 (off) or at least 16 pixels")
    inputs = [args.model, *args.inputs] if args.model else []
    if args.weights:  # no model positional: the first one is an input
        from genforge.deploy.pretrained import names_a_model
        from genforge.deploy.thirdparty import load_weights
        if inputs and names_a_model(inputs[0]):
            raise UserError(f"give a model or --weights, not both ({inputs[0]} is a model)")
        if not inputs:
            raise UserError("upscale needs at least one input image or folder")
        up = Upscaler(args.weights, opened=load_weights(args.weights, args.device))
    else:
        if len(inputs) < 2:
            raise UserError("upscale needs a model (or --weights FILE) and at least one input image or folder")
        inputs = inputs[1:]
        up = Upscaler(args.model, device=args.device)
    written, failed = process_files(inputs, args.output,
                                    lambda img: up.upscale_array(img, tile=args.tile, overlap=args.overlap),
                                    suffix=args.suffix, ext=args.ext, max_pixels=args.max_pixels,
                                    progress=not args.no_progress)
    print(f"upscaled {written} image(s) x{up.scale} into {args.output}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def cmd_translate(args) -> int:
    from genforge.data.io import read_image
    from genforge.deploy.files import process_files
    from genforge.deploy.translator import Translator
    tr = Translator(args.model, device=args.device)
    style = read_image(args.style) if args.style else None
    if style is not None or args.seed is not None:
        tr.style_code(style, args.seed)  # refuse --style/--seed for models without a style encoder, once
    tr.network(args.direction)  # refuse a wrong direction before touching any file
    written, failed = process_files(
        args.inputs, args.output,
        lambda img: tr.translate_array(img, direction=args.direction, style=style, seed=args.seed),
        suffix=args.suffix, ext=args.ext or "png", max_pixels=args.max_pixels, progress=not args.no_progress,
        reader=tr.read)
    print(f"translated {written} image(s) into {args.output}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def cmd_eval_sr(args) -> int:
    from genforge.deploy.upscaler import evaluate_sr, format_sr_table
    result = evaluate_sr(args.model, args.benchmark, args.scale, mode=args.mode,
                         self_ensemble=args.self_ensemble, tile=args.tile)
    baseline = evaluate_sr("bicubic", args.benchmark, args.scale, mode=args.mode) if args.model != "bicubic" else None
    print(format_sr_table(result, baseline))
    if args.output:
        import json
        from genforge.engine.checkpoint import save_text
        save_text(Path(args.output), json.dumps({"result": result, "bicubic": baseline}, indent=2) + "\n")
        print(f"wrote {args.output}")
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
                    concurrency=args.concurrency, queue=args.queue)
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


def _image_output_options(s: argparse.ArgumentParser, *, ext_help: str) -> None:
    """What upscale and translate share: output naming, the pixel guard, the device, progress."""
    s.add_argument("--suffix", default="", help="added to output file names, e.g. _x2")
    s.add_argument("--ext", help=ext_help)
    s.add_argument("--max-pixels", type=int, default=100_000_000, help="refuse larger inputs (decompression bombs)")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    s.add_argument("--no-progress", action="store_true")


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

    s = sub.add_parser("sample", help="draw samples from a generator")
    s.add_argument("model", help="shipped model name, model folder, run directory or .onnx file")
    s.add_argument("-n", type=int, default=64, help="number of samples")
    s.add_argument("-o", "--output", required=True, help="grid PNG, or a folder ending in / for one PNG per sample")
    s.add_argument("--label", type=int, help="class label (conditional models)")
    s.add_argument("--interpolate", type=int, metavar="STEPS", help="latent interpolation rows with STEPS images each")
    s.add_argument("--rows", type=int, default=8, help="rows for --interpolate")
    s.add_argument("--nrow", type=int, default=8, help="images per grid row")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("eval", help="FID/KID, class coverage and accuracy of a generator")
    s.add_argument("model", help="shipped model name, model folder or run directory")
    s.add_argument("--metrics", default="fid,kid", help="comma list of: fid, kid, coverage, accuracy")
    s.add_argument("-n", type=int, default=2000, help="generated samples")
    s.add_argument("--features", default="auto", help="feature network: digits, torchscript:PATH, inception:WEIGHTS")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-o", "--output", help="report path (default: RUN_DIR/eval.json or ./eval.json)")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("upscale", help="super-resolve images or folders")
    s.add_argument("model", nargs="?", help="shipped model name (isrnet-x2, ...), model folder, run directory "
                                            "or .onnx file; omitted with --weights")
    s.add_argument("inputs", nargs="*", help="image files or folders (recursive)")
    s.add_argument("--weights", metavar="FILE", help="third-party super-resolution weights (.pth, .pt, .ckpt, "
                                                     ".safetensors: ESRGAN, Real-ESRGAN, SwinIR, ...) via spandrel")
    s.add_argument("-o", "--output", required=True, help="output folder (inputs keep their names)")
    s.add_argument("--tile", type=int, default=0, help="process in tiles of this many LR pixels (0 = whole image)")
    s.add_argument("--overlap", type=int, help="tile overlap in LR pixels (default: the receptive-field radius)")
    _image_output_options(s, ext_help="output format (png, jpg, ...); default: the input's")
    # with an optional model, argparse takes both positionals at their first appearance: inputs given
    # after an option (upscale MODEL -o out/ in.png) arrive as leftovers and are added here
    s.set_defaults(func=cmd_upscale, leftover_inputs="inputs")

    s = sub.add_parser("translate", help="image-to-image translation (Pix2Pix, CycleGAN, SPADE) of files or folders")
    s.add_argument("model", help="shipped model name (pix2pix-edges2photos, ...), model folder, run directory or .onnx")
    s.add_argument("inputs", nargs="+", help="image files or folders (SPADE: label maps of class ids)")
    s.add_argument("-o", "--output", required=True, help="output folder (inputs keep their names)")
    s.add_argument("--direction", default="a2b", choices=("a2b", "b2a"), help="CycleGAN: which generator")
    s.add_argument("--style", help="SPADE with a style encoder: take the style from this photo")
    s.add_argument("--seed", type=int, help="SPADE with a style encoder: a random style from this seed")
    _image_output_options(s, ext_help="output format (default png)")
    s.set_defaults(func=cmd_translate)

    s = sub.add_parser("eval-sr", help="PSNR/SSIM on a benchmark set with the published protocol")
    s.add_argument("model", help="model name, folder, run directory, or 'bicubic'")
    s.add_argument("--benchmark", required=True, help="folder with HR/ and LR_bicubic/X{s}/ (e.g. Set5)")
    s.add_argument("--scale", type=int, required=True)
    s.add_argument("--mode", choices=("y", "rgb"), default="y", help="Y of BT.601 (papers) or RGB")
    s.add_argument("--self-ensemble", action="store_true", help="average the 8 flipped/rotated outputs")
    s.add_argument("--tile", type=int, default=0)
    s.add_argument("-o", "--output", help="write the per-image table as JSON")
    s.set_defaults(func=cmd_eval_sr)

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
    s.add_argument("--timeout", type=float, default=60.0, help="seconds per request before 504")
    s.add_argument("--concurrency", type=int, default=1, help="model calls running at once")
    s.add_argument("--queue", type=int, default=8, help="requests that may wait; more get 503 + Retry-After")
    s.add_argument("--threads", type=int, default=0, help="torch threads (0 = cores / concurrency)")
    s.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("demo", help="train a small GAN on digits and show what genforge does")
    s.add_argument("-o", "--output", default="demo_out")
    s.add_argument("--steps", type=int, default=1500)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads that spin while waiting make a shared or oversubscribed CPU several times
    # slower; passive waiting costs little when the cores are free. Must precede importing torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
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
