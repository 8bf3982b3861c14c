"""Running an image-to-image model over files and folders (upscale, translate), and the command-line
options the model-running commands share (output naming, --tile, --half, --provider).

Each output keeps its input's name (plus an optional suffix) in the output folder, is written to
a temporary name and renamed, so a crash never leaves half an image. Bad inputs are reported one
line each and counted; the others are still processed."""

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from genforge.data.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    format_limit,
    list_image_files,
    read_image,
    write_image,
)
from genforge.deploy.infer import AUTO, MIN_TILE
from genforge.errors import UserError

LOSSY_8BIT = {".jpg", ".jpeg", ".webp", ".bmp", ".gif"}


def collect_inputs(paths: list[str]) -> list[tuple[Path, Path]]:
    """(file, path relative to its root) for every input file or image inside input folders."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [(f, f.relative_to(p)) for f in list_image_files(p)]
        elif p.is_file() or p.is_symlink():  # a dangling or looping link: the reader says which, for this file
            found.append((p, Path(p.name)))
        else:
            raise UserError(f"input {p} does not exist")
    if not found:
        raise UserError(f"no images found in {', '.join(paths)}")
    return found


def output_path(rel: Path, out_dir: Path, suffix: str, ext: str | None) -> Path:
    new_ext = ("." + ext.lstrip(".")) if ext else rel.suffix
    if new_ext.lower() not in IMAGE_EXTENSIONS:
        raise UserError(f"--ext {ext}: not an image format ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return out_dir / rel.with_name(rel.stem + suffix + new_ext)


def image_file_target(output: str | Path, ext: str | None = None) -> bool:
    """Whether -o names one image file (out.png) rather than a folder: an image extension, and not an
    existing folder. Its extension is the format, so an --ext that says otherwise is refused."""
    out = Path(output)
    if str(output).endswith(("/", os.sep)) or out.suffix.lower() not in IMAGE_EXTENSIONS or out.is_dir():
        return False
    if ext and "." + ext.lstrip(".").lower() != out.suffix.lower():
        raise UserError(f"-o {output} with --ext {ext}: the output file's extension is its format")
    return True


def process_files(inputs: list[str], out_dir: str, fn: Callable[[np.ndarray], np.ndarray], *,
                  suffix: str = "", ext: str | None = None, default_ext: str | None = None,
                  max_pixels: int | None = None, overwrite: bool = False, progress: bool = True,
                  reader: Callable[..., np.ndarray] = read_image) -> tuple[int, int]:
    """Apply fn to every input image (read by `reader`: images, or label maps); returns (written, failed).

    `out_dir` is a folder (outputs keep their input's name, plus `suffix`, with `ext`, else `default_ext`,
    else the input's extension), or one image file (out.png) for a single input image. Whatever goes wrong
    with one file (reading it, the model, writing the output) is one line and the next file is processed;
    an output too large for its format (GIF, WebP, JPEG) is written as PNG instead, with a note."""
    files = collect_inputs(inputs)
    out = Path(out_dir)
    if image_file_target(out, ext):
        if len(files) != 1:
            raise UserError(f"-o {out_dir}: an image file takes one input image, not {len(files)}; give a "
                            "folder as -o for several")
        targets = [out]
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"-o {out_dir}: exists and is not a folder")
        targets = [output_path(rel, out, suffix, ext or default_ext) for _, rel in files]
    if len(set(targets)) != len(targets):
        raise UserError("two inputs would be written to the same output name; use separate runs or --suffix")
    try:
        targets[0].parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"-o {out_dir}: cannot create the output folder: {exc.strerror or exc}") from None
    written = failed = 0
    bar = tqdm(list(zip(files, targets)), unit="img", disable=not progress or None, file=sys.stderr)
    for (src, _), dst in bar:
        bar.set_postfix_str(src.name, refresh=False)
        try:
            if os.path.realpath(src) == os.path.realpath(dst) and not overwrite:  # realpath: no raise on loops
                bar.write(f"error: {src}: the output would overwrite the input (use another -o)", file=sys.stderr)
                failed += 1
                continue
            result = fn(reader(src, max_pixels=max_pixels))
            write_image(_fitting_format(dst, result.shape, set(targets), bar), result)
            written += 1
        except UserError as err:  # BadImageError (reading), the model's refusals, write errors
            bar.write(f"error: {err}", file=sys.stderr)
            failed += 1
        except MemoryError:
            bar.write(f"error: {src}: out of memory (try --tile 512)", file=sys.stderr)
            failed += 1
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the batch
            bar.write(f"error: {src}: {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
            failed += 1
    bar.close()
    return written, failed


def _fitting_format(dst: Path, shape: tuple[int, ...], taken: set[Path], bar) -> Path:
    """dst, or dst as .png when its format cannot hold the size (GIF sides <= 65535, WebP 16383, JPEG 65500)."""
    reason = format_limit(dst.suffix, shape)
    if reason is None:
        return dst
    png = dst.with_suffix(".png")
    if png in taken:
        raise UserError(f"cannot write image '{dst}': {reason}, and {png.name} is another input's output")
    bar.write(f"note: {dst.name}: {reason}; writing {png} instead", file=sys.stderr)
    return png


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def split_media(inputs: list[str], output: str, *, suffix: str = "", ext: str | None = None
                ) -> tuple[list[str], list[tuple[Path, Path]]]:
    """(image inputs for process_files, [(video, its output)]) for the model-running commands.

    An -o with a video extension is one output video: it takes one input, a video file or a folder of
    numbered frames (a .gif given one still image is that image). An -o with an image extension is one
    image (see image_file_target). Otherwise -o is a folder; video files given directly (not inside input folders, which
    hold images) go to <folder>/<stem><suffix><ext>: ext is the input's, or --ext when it is a video
    extension; an image --ext (png, ...) writes a folder of numbered frames <folder>/<stem><suffix>/."""
    from genforge.deploy.video import VIDEO_EXTENSIONS, is_frames_target, is_video
    out = Path(output)
    still = len(inputs) == 1 and Path(inputs[0]).is_file() and not is_video(inputs[0])
    if not is_frames_target(output) and not (still and image_file_target(output)):  # out.gif: a still or a video
        if len(inputs) != 1 or not (is_video(inputs[0]) or Path(inputs[0]).is_dir()):
            raise UserError(f"-o {output}: a video output takes one input video or frames folder "
                            "(give a folder as -o for several inputs)")
        return [], [(Path(inputs[0]), out)]
    new_ext = ("." + ext.lstrip(".")).lower() if ext else None
    images, videos = [], []
    for name in inputs:
        src = Path(name)
        if not (src.is_file() and is_video(src)):
            images.append(name)
            continue
        video_ext = new_ext if new_ext in VIDEO_EXTENSIONS else src.suffix.lower()
        frames = new_ext is not None and new_ext not in VIDEO_EXTENSIONS
        videos.append((src, out / (src.stem + suffix + ("" if frames else video_ext))))
    if videos and image_file_target(output):
        raise UserError(f"-o {output} names one image file; a video input needs a video file or a folder as -o")
    targets = [dst for _, dst in videos]
    if len(set(targets)) != len(targets):
        raise UserError("two input videos would be written to the same output name; use separate runs or --suffix")
    return images, videos


def add_video_options(s) -> None:
    """--crf and --codec, for the commands that write videos (upscale, interpolate)."""
    s.add_argument("--crf", type=int, default=18, help="video quality: constant rate factor for libx264/libx265 "
                                                      "(0 lossless, 18 default, 23 smaller) and VP9")
    s.add_argument("--codec", help="video encoder (default libx264; libvpx-vp9 for .webm, gif for .gif); a "
                                   "missing encoder falls back to mpeg4 with a note")


def add_output_options(s, *, ext_help: str) -> None:
    """What upscale and translate share: output naming, the pixel guard, the device, progress."""
    s.add_argument("--suffix", default="", help="added to output file names, e.g. _x2")
    s.add_argument("--ext", help=ext_help)
    s.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger inputs (decompression bombs; default {DEFAULT_MAX_PIXELS:,})")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    s.add_argument("--no-progress", action="store_true")


def tile_option(text: str):
    """argparse type of --tile: 'auto' or a number of input pixels (0: the whole image)."""
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number of pixels, got {text!r}") from None


def add_tile_option(s, extra: str = "") -> None:
    from genforge.deploy.tiling import DEFAULT_MAX_MEMORY, memory_option
    s.add_argument("--tile", type=tile_option, default=AUTO, metavar="auto|N",
                   help="process in tiles of at most N input pixels a side (bounded memory for any image size): "
                        "0 = the whole image; auto (default) = on CUDA the largest tile that fits half the free GPU "
                        "memory, on the CPU the whole image if it fits --max-memory, else the largest tile that "
                        "does, both at the model's measured bytes per pixel" + extra)
    s.add_argument("--max-memory", type=memory_option, default=DEFAULT_MAX_MEMORY, metavar="SIZE",
                   help=f"with --tile auto on the CPU: memory for one image, its 8/16-bit arrays in and out plus "
                        f"the network's working set on a tile (e.g. 512M, 2G; default "
                        f"{DEFAULT_MAX_MEMORY // 2 ** 20}M); torch and the model add ~0.6 GB to the process")


def check_tile(tile) -> None:
    if tile != AUTO and (tile < 0 or 0 < tile < MIN_TILE):
        raise UserError(f"--tile must be auto, 0 (whole image) or at least {MIN_TILE} pixels")


def add_runtime_options(s) -> None:
    """--half and --provider, for every command that runs a model (upscale, translate, sample)."""
    s.add_argument("--half", action="store_true", help="CUDA only: run the network in 16-bit floats (about "
                                                       "half the memory, faster on tensor cores)")
    s.add_argument("--provider", choices=("cpu", "cuda"), help="ONNX Runtime execution provider for .onnx "
                                                               "models (default cpu; cuda with --device cuda)")


def process_videos(pairs: list[tuple[Path, Path]], transform: Callable, *, fps_factor: int = 1, codec=None,
                   crf: int = 18, progress: bool = True, after: Callable | None = None) -> tuple[int, int]:
    """Stream every (video, output) pair through transform(frames, src) (video.transcode: audio kept,
    nothing half-written); a bad video is one `error:` line and counted, the others are still done.
    after(src, dst), if given, runs for every video written. Returns (written, failed)."""
    from genforge.deploy.video import transcode
    done = failed = 0
    for src, dst in pairs:
        if os.path.realpath(src) == os.path.realpath(dst):
            print(f"error: {src}: the output would overwrite the input (use another -o)", file=sys.stderr)
            failed += 1
            continue
        try:
            info = transcode(src, dst, lambda frames, src=src: transform(frames, src), fps_factor=fps_factor,
                             codec=codec, crf=crf, progress=progress)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        done += 1
        audio = f", audio {'+'.join(info['audio'])} kept" if info["audio"] else ""
        print(f"wrote {dst}: {info['frames']} frames {info['width']}x{info['height']} at "
              f"{float(info['fps']):.3f} fps{audio}")
        if after is not None:
            after(src, dst)
    return done, failed
