"""Peak memory and time of `genforge upscale` at its defaults (--tile auto, --max-memory 384M on the CPU).

    python bench/upscale_memory.py            # the targets: 4000x3000 x2 < 1 GB, the 70 KB 16-bit 3000x3000 PNG
    python bench/upscale_memory.py --quick    # 1000x750 cases only (about a minute)
    python bench/upscale_memory.py --sweep    # adds --max-memory 128M..1G on a 1500x1500 image (time vs memory)
    python bench/upscale_memory.py --budget 2G   # adds the 4000x3000 photo at --max-memory 2G (default vs more)

Every case is the real command in a fresh child process; its peak RSS is the kernel's figure for
that child alone (its VmHWM, printed on exit), so torch's own libraries (~0.5 GB here) count too. The
tile auto chose and the model's bytes per pixel are computed in this process with the same code.
Writes bench/results/upscale_memory.md."""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, machine_line  # noqa: F401  (path and OpenMP first)

import numpy as np  # noqa: E402

from genforge.data.io import read_image, write_image  # noqa: E402

MODEL = "isrnet-x2"
TARGET_MB = 1000


def photo_like(h: int, w: int) -> np.ndarray:
    """Smooth colour gradients plus texture: compresses like a photo, exercises the network."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(x / 300), np.cos(y / 200), np.sin((x + y) / 500)], axis=2) * 80 + 128
    noise = rng.normal(0, 12, (h // 4 + 1, w // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)[:h, :w]
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def flat16(side: int) -> np.ndarray:
    """Mostly flat 16-bit RGB with a few soft shapes: a ~70 KB PNG that decodes to 54 MB."""
    image = np.full((side, side, 3), 30000, np.uint16)
    for i, (r, c) in enumerate([(0.25, 0.3), (0.6, 0.7), (0.8, 0.2)]):
        top, left = int(side * r), int(side * c)
        image[top:top + side // 8, left:left + side // 6] = (10000 + 12000 * i, 50000 - 9000 * i, 20000)
    return image


def tile_work(h: int, w: int, tile: int, overlap: int) -> float:
    """Input pixels the network sees over all tiles (each read with its overlap), per image pixel."""
    from genforge.deploy.tiling import _spans

    def read(size: int) -> int:
        return sum(min(size, end + overlap) - max(0, start - overlap) for start, end in _spans(size, tile, 1))
    return read(h) * read(w) / (h * w) if tile else 1.0


def chosen_tile(h: int, w: int, dtype, max_memory: int | None) -> tuple[str, float, float]:
    """(what --tile auto resolves to for this image, the model's measured bytes per input pixel, the
    tiles' work per image pixel: 1.0 for the whole image, more for the overlaps)."""
    from genforge.deploy.infer import AUTO, LazyImage, image_bytes
    from genforge.deploy.upscaler import Upscaler
    up = Upscaler(MODEL, device="cpu")
    if max_memory:
        up.max_memory = max_memory
    x = LazyImage(np.zeros((h, w, 3), dtype), None, 3)
    tile = up.tile_size(AUTO, up._run, 3, up.default_overlap, key=3, shape=x.shape[1:],
                        held=image_bytes(x, up.scale, 65535 if dtype == np.uint16 else 255))
    return ((f"{tile} px (overlap {up.default_overlap})" if tile else "whole image"), up.bytes_per_pixel(up._run, 3, 3),
            tile_work(h, w, tile or 0, up.default_overlap))


def run_case(label: str, image: np.ndarray, name: str, tmp: Path, *options: str) -> dict:
    src = tmp / name
    write_image(src, image)
    t0 = time.perf_counter()
    decoded = read_image(src)
    decode_s = time.perf_counter() - t0
    out_dir = tmp / f"out_{label.replace(' ', '_')}"
    args = ["upscale", MODEL, str(src), "-o", str(out_dir), "--no-progress", *options]
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode:
        sys.exit(f"genforge {' '.join(args)} failed:\n{res.stdout}{res.stderr}")
    peak_mb = int(res.stderr.rsplit("VmHWM:", 1)[1].split()[0]) / 1024
    out = read_image(out_dir / name)
    assert out.shape[:2] == (2 * image.shape[0], 2 * image.shape[1]) and out.dtype == image.dtype
    budget = next((options[i + 1] for i, o in enumerate(options) if o == "--max-memory"), None)
    from genforge.deploy.tiling import parse_memory
    tile, per_pixel, work = chosen_tile(*image.shape[:2], image.dtype, parse_memory(budget) if budget else None)
    return {"label": label, "image": f"{image.shape[1]}x{image.shape[0]} {image.dtype.itemsize * 8}-bit",
            "file_kb": src.stat().st_size / 1024, "decode_s": decode_s, "options": " ".join(options) or "defaults",
            "tile": tile, "work": work, "bpp": per_pixel, "peak_mb": peak_mb, "seconds": seconds,
            "decoded_mb": decoded.nbytes / 2 ** 20, "out_mb": out.nbytes / 2 ** 20}


# `python -m genforge ARGS` that prints its own VmHWM on the way out. The kernel's high-water mark
# of the process's memory, reset by exec: ru_maxrss would also count the parent's pages at fork.
PEAK_WRAPPER = """
import atexit, runpy, sys
atexit.register(lambda: sys.stderr.write([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]))
sys.argv = ['genforge', *sys.argv[1:]]
runpy.run_module('genforge', run_name='__main__', alter_sys=True)
"""


def baseline_mb() -> float:
    """Peak RSS of a child that only imports what `genforge upscale` imports and loads the model."""
    code = (f"from genforge.deploy.upscaler import Upscaler; Upscaler({MODEL!r}, device='cpu'); "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(res.stdout.split()[1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1000x750 and 1000x1000 cases only")
    p.add_argument("--sweep", action="store_true", help="also --max-memory 128M, 512M, 1G on 1500x1500")
    p.add_argument("--budget", action="append", default=[], metavar="SIZE",
                   help="also the large photo at --max-memory SIZE (e.g. 2G): what the default budget costs")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    load_start = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        w, h, side = (1000, 750, 1000) if args.quick else (4000, 3000, 3000)
        photo = photo_like(h, w)
        rows.append(run_case("photo", photo, "photo.png", tmp))
        print(rows[-1], flush=True)
        for budget in args.budget:
            rows.append(run_case(f"photo {budget}", photo, "photo.png", tmp, "--max-memory", budget))
            print(rows[-1], flush=True)
        del photo
        rows.append(run_case("flat 16-bit", flat16(side), "flat16.png", tmp))
        print(rows[-1], flush=True)
        if args.sweep:
            sweep = photo_like(1500, 1500)
            for budget in ("128M", "256M", "512M", "1G"):
                rows.append(run_case(f"sweep {budget}", sweep, "sweep.png", tmp, "--max-memory", budget))
                print(rows[-1], flush=True)
    base = baseline_mb()
    lines = ["# Upscale memory", "",
             f"`python bench/upscale_memory.py{''.join(' ' + a for a in sys.argv[1:])}`: `genforge upscale {MODEL}` on "
             f"the CPU, one image per fresh child process; peak RSS is that child's (kernel VmHWM), so "
             f"torch's own libraries count: importing them and loading the model alone peaks at {base:,.0f} MB here. "
             f"Machine: {machine_line()}; 1-minute load average {load_start:.1f} at the start (a training run shared "
             f"the 2 cores, so the times are noisy and slower than on an idle machine). Target: peak RSS under "
             f"{TARGET_MB:,} MB for 4000x3000 x2.", "",
             "| case | image | PNG file | decode | options | auto tile | tile work | model bytes/px | peak RSS | "
             "wall time |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['image']} -> x2 | {r['file_kb']:,.0f} KB | {r['decode_s']:.2f} s | "
                     f"{r['options']} | {r['tile']} | {r['work']:.2f}x | {r['bpp']:,.0f} | {r['peak_mb']:,.0f} MB | "
                     f"{r['seconds']:,.0f} s |")
    lines += ["", "Bytes per pixel: the tensors the network holds at once on a 128x128 probe (counted op by op), "
              "times 1.25 for what the count cannot see. --max-memory covers the decoded input and the 8/16-bit "
              "output array plus the tile's read window (tile + 2 x overlap, squared) times bytes per pixel; the "
              "rest of the peak is torch and the model, and the PNG encoder's buffers while the output is written. "
              "Tile work: the input pixels the network computes over all tiles (each read with its overlap) per "
              "image pixel; 1.00x is one whole-image call."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write and not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "upscale_memory.md").write_text(text)


if __name__ == "__main__":
    main()
