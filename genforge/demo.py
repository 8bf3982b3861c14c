"""`make demo`: a few minutes on 2 CPU cores that show the whole life cycle on bundled data:
train a small GAN on digits, write sample grids and the FID curve, evaluate, sample the shipped models,
upscale, translate, and interpolate a bundled clip's holdout section with the shipped models."""

import json
import time
from pathlib import Path

import numpy as np

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


def run_demo(out: Path, steps: int = 1500, vfi_model: str = "vfinet") -> None:
    from genforge.deploy.generator import Generation
    from genforge.evaluate import evaluate, format_table, write_report
    from genforge.train import train
    out.mkdir(parents=True, exist_ok=True)
    config = Path(__file__).resolve().parent.parent / "configs" / "gan_digits.yaml"
    every = max(1, steps // 6)
    print(f"[1/8] training a DCGAN (BCE loss) on the bundled digits for {steps} steps ...")
    t0 = time.time()
    run = train(str(config), [f"train.steps={steps}", f"train.eval_every={every}", f"train.sample_every={every}",
                              f"train.checkpoint_every={every}"], runs_root=str(out / "runs"))
    print(f"      done in {time.time() - t0:.0f} s: {run}")
    print("[2/8] sample grids and FID curve ...")
    trained = Generation(str(run))
    grid = trained.save(trained.generate(64), out / "gan_samples.png")
    curve = plot_curve(run / "metrics.jsonl", out / "fid_curve.png")
    print("[3/8] evaluating (FID/KID against the real digits, class coverage) ...")
    result = evaluate(str(run), ["fid", "kid", "coverage"], n=2000)
    print(format_table(result))
    report = write_report(result, str(run), None)
    print("[4/8] sampling the shipped models ...")
    shipped = []
    for m in list_models():
        if m["task"] == "generation":
            gen = Generation(m["name"])
            label = 3 if gen.num_classes else None
            path = out / f"{m['name']}.png"
            gen.save(gen.generate(64, label=label) if label is None else gen.generate(16, label=label), path)
            shipped.append(path)
        elif m["task"] == "video-generation":  # a grid of 8 clips, an animated GIF
            import genforge
            video = genforge.load(m["name"], device="cpu")
            shipped.append(video.save(video.generate(8, seed=0), out / f"{m['name']}.gif", nrow=4))
    sr = superres_demo(out)
    translated = translation_demo(out)
    interpolated = interpolation_demo(out, vfi_model)
    text = text_demo(out)
    print("\noutputs:")
    for p in [grid, curve, report, *shipped, sr, *translated, *interpolated, text, run / "samples", run / "tb"]:
        if p is not None:
            print(f"  {p}")
    print(f"  TensorBoard: tensorboard --logdir {run / 'tb'}")


def superres_demo(out: Path) -> Path | None:
    """bicubic | each shipped SR model | ground truth, on a crop of a holdout photo, with PSNR."""
    from genforge.data import read_images
    from genforge.data.degrade import bicubic_downscale
    from genforge.data.io import write_image
    from genforge.deploy.upscaler import Upscaler
    from genforge.metrics.psnr_ssim import evaluate_pair, upscale_bicubic
    upscalers = {m["name"]: Upscaler(m["name"], device="cpu") for m in list_models()
                 if m["task"] == "super-resolution"}
    if not upscalers:
        print("[5/8] no super-resolution model is shipped yet: skipped")
        return None
    scale = 4 if any(up.scale == 4 for up in upscalers.values()) else 2
    models = [n for n, up in upscalers.items() if up.scale == scale]
    print(f"[5/8] super-resolution x{scale} of a holdout photo (chelsea): bicubic | "
          + " | ".join(models) + " | ground truth")
    images, _, _ = read_images("photos", split="holdout")
    hr = images[0][:, :, :3]
    hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
    lr = bicubic_downscale(hr, scale)
    outputs = [("bicubic", upscale_bicubic(lr, scale))]
    outputs += [(n, upscalers[n].upscale_array(lr)) for n in models]
    size = min(160, hr.shape[0] // 2, hr.shape[1] // 2)
    top, left = hr.shape[0] // 2 - size // 2, hr.shape[1] // 2 - size // 2
    tiles = []
    for name, sr in outputs:
        score = evaluate_pair(sr, hr, scale)
        print(f"      {name:<16} PSNR {score['psnr']:.2f} dB  SSIM {score['ssim']:.4f} (whole image, Y)")
        tiles.append(sr[top:top + size, left:left + size, :3])
    tiles.append(hr[top:top + size, left:left + size])
    gap = np.full((size, 6, 3), 255, np.uint8)
    row = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
    path = out / f"superres_x{scale}.png"
    write_image(path, row.repeat(2, axis=0).repeat(2, axis=1))
    return path


def translation_demo(out: Path) -> list[Path]:
    """input | output | ground truth for a holdout image, for each shipped translation model."""
    from genforge.data.io import write_image
    from genforge.data.preprocess import read_run_data
    from genforge.deploy.translator import Translator
    from genforge.metrics.psnr_ssim import psnr
    models = [m["name"] for m in list_models() if m["task"] == "translation"]
    if not models:
        print("[6/8] no translation model is shipped yet: skipped")
        return []
    print(f"[6/8] image translation of a holdout image: input | output | ground truth ({', '.join(models)})")
    written = []
    for name in models:
        tr = Translator(name, device="cpu")
        cfg = tr.source.config
        if cfg["data"]["dataset"].startswith("bsds500:"):  # the demo stays offline: a bundled photo's edge map
            cfg = {**cfg, "data": {**cfg["data"], "dataset": "edges2photos"}}
        data = read_run_data(cfg, "holdout")
        truth = data.truth if data.kind == "unpaired" else data.b
        a, target = data.a[0], truth[0]
        result = tr.translate_array(a)
        path = out / f"{name}.png"
        write_image(path, comparison_row([_show_input(a, tr.label_nc), _rgb(result), _rgb(target)], 256, gap=6))
        print(f"      {name:<24} {data.names_a[0]}: PSNR {psnr(_rgb(result), _rgb(target)):.2f} dB (whole image, RGB)")
        written.append(path)
    return written


def interpolation_demo(out: Path, model: str = "vfinet", clip: str = "bikes.mp4", seconds: float = 1.0) -> list[Path]:
    """frame 0 | blend | DIS | model | ground truth | frame 1 on the first holdout triplet of a bundled clip,
    with PSNR, and the first `seconds` of its holdout section at twice the frame rate (MP4)."""
    from genforge.data.io import write_image
    from genforge.data.triplets import split_frames
    from genforge.deploy.interpolator import Interpolator
    from genforge.deploy.pretrained import names_a_model
    from genforge.deploy.video import VideoWriter, bundled_clip, open_video
    from genforge.errors import UserError
    from genforge.metrics.flow import dis_interpolate
    from genforge.metrics.psnr_ssim import psnr
    if not names_a_model(model):
        print(f"[7/8] no frame-interpolation model {model!r} is shipped yet: skipped")
        return []
    try:
        vfi = Interpolator(model, device="cpu")
    except UserError as err:
        print(f"[7/8] frame interpolation: skipped ({err})")
        return []
    t0 = time.time()
    with open_video(bundled_clip(clip)) as reader:
        fps, frames = reader.fps, split_frames(list(reader), "holdout")  # never trained on
    frames, clip = frames[:max(3, round(seconds * fps))], Path(clip).stem
    print(f"[7/8] frame interpolation ({model}) of {clip}'s holdout section: frame 0 | blend | DIS | model | "
          f"ground truth | frame 1, and {len(frames)} frames at twice {float(fps):.4g} fps")
    a, truth, b = frames[:3]
    outputs = {"blend": np.round((a.astype(np.float64) + b) / 2).astype(np.uint8),
               "DIS": dis_interpolate(a, b, 0.5), "model": vfi.interpolate_array(a, b, 0.5)}
    print("      " + ", ".join(f"{name} {psnr(y, truth):.2f} dB" for name, y in outputs.items())
          + " (PSNR of the middle frame against the true one, RGB)")
    gap = np.full((a.shape[0], 6, 3), 255, np.uint8)
    strip = out / f"interpolation_{clip}.png"
    write_image(strip, np.concatenate([x for t in (a, *outputs.values(), truth, b) for x in (t, gap)][:-1], axis=1))
    video = out / f"interpolation_{clip}_x2.mp4"
    h, w = a.shape[:2]
    with VideoWriter(video, fps * 2, w, h, progress=False) as writer:
        for frame in vfi.interpolate_frames(frames, 2, name=clip):
            writer.write(frame)
    print(f"      {writer.count} frames at {float(fps * 2):.4g} fps ({float(writer.count / (fps * 2)):.1f} s), "
          f"done in {time.time() - t0:.0f} s")
    return [strip, video]


def text_demo(out: Path, model: str = "chargpt-pydoc", prompt: str = "A class definition") -> Path | None:
    """The shipped text model continues a prompt (seeded: the same text on every run of this machine)."""
    if model not in {m["name"] for m in list_models()}:
        print(f"[8/8] no text model {model!r} is shipped yet: skipped")
        return None
    import genforge
    text = prompt + genforge.load(model, device="cpu").generate_text(prompt, 300, temperature=0.8, top_k=40, seed=0)
    print(f"[8/8] text generation ({model}), prompt {prompt!r}:\n" + "\n".join("      " + line
                                                                            for line in text.splitlines()[:8]))
    path = out / f"{model}.txt"
    path.write_text(text + "\n", encoding="utf-8")
    return path


def comparison_row(images: list[np.ndarray], size: int, gap: int = 4) -> np.ndarray:
    """The images' centre crops (at most size x size, all the same side) side by side, white gaps."""
    side = min(size, *(min(x.shape[:2]) for x in images))
    tiles = []
    for x in images:
        top, left = (x.shape[0] - side) // 2, (x.shape[1] - side) // 2
        tiles += [_rgb(x[top:top + side, left:left + side]), np.full((side, gap, 3), 255, np.uint8)]
    return np.concatenate(tiles[:-1], axis=1)


def translation_sheet(translators: list, out: Path, size: int = 192, rows: int = 4) -> Path:
    """One row per holdout image (the first `rows`) of the first translator's data: input | each
    translator's output | ground truth (for unpaired data with a known mapping: the true B)."""
    from genforge.data.io import write_image
    from genforge.data.preprocess import read_run_data
    data = read_run_data(translators[0].source.config, "holdout")
    truth = data.truth if data.kind == "unpaired" else data.b
    lines = [comparison_row([_show_input(a, translators[0].label_nc), *(tr.translate_array(a) for tr in translators),
                             target], size) for a, target in list(zip(data.a, truth))[:rows]]
    width = max(r.shape[1] for r in lines)
    lines = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in lines]
    write_image(out, np.concatenate(lines, axis=0))
    return out


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, axis=2) if image.ndim == 3 and image.shape[2] == 1 else image[..., :3]


def _show_input(a: np.ndarray, label_nc: int) -> np.ndarray:
    """An input as RGB: grey repeated, a label map coloured by class."""
    from genforge.data.grid import LABEL_PALETTE
    if not label_nc:
        return _rgb(a if a.ndim == 3 else a[:, :, None])
    return LABEL_PALETTE[a if a.ndim == 2 else a[:, :, 0]]
