"""Peak memory and time of `genforge upscale` on a 4000x3000 photo-like image (target: peak RSS < 2 GB).

    python bench/upscale_memory.py MODEL [--tile 512]

Runs the real command in a child process and reads its peak RSS from the kernel (ru_maxrss);
writes bench/results/upscale_memory.md."""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.data.io import read_image, write_image  # noqa: E402


def photo_like(h: int, w: int) -> np.ndarray:
    """Smooth colour gradients plus texture: compresses like a photo, exercises the network."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(x / 300) , np.cos(y / 200), np.sin((x + y) / 500)], axis=2) * 80 + 128
    noise = rng.normal(0, 12, (h // 4, w // 4, 3)).repeat(4, 0).repeat(4, 1)[:h, :w]
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--size", default="4000x3000")
    args = p.parse_args()
    w, h = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.png"
        write_image(src, photo_like(h, w))
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "genforge", "upscale", args.model, str(src), "-o",
                              str(Path(tmp) / "out"), "--tile", str(args.tile), "--no-progress"],
                             capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if res.returncode:
            sys.exit(res.stderr)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out = read_image(Path(tmp) / "out" / "big.png")
    line = (f"| {args.model} | {w}x{h} -> {out.shape[1]}x{out.shape[0]} | --tile {args.tile} | "
            f"{peak_mb:,.0f} MB | {seconds:.0f} s |")
    text = ("# Upscale memory\n\nPeak RSS of the whole `genforge upscale` process (kernel ru_maxrss), 2 CPU cores.\n\n"
            "| model | image | tiling | peak RSS | wall time |\n|---|---|---|---|---|\n" + line + "\n")
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "upscale_memory.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
