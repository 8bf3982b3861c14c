"""imresize speed: genforge's MATLAB-compatible bicubic resize of a 512x512 RGB image (the size the brief
promises "well under 0.5 s" for), beside PyTorch's and Pillow's bicubic resize of the same image.

    python bench/imresize.py [--size 512] [--scales 0.25,0.5,2] [--threads 1,2] [--repeats 15]

For each thread count and scale: the median of `repeats` timed calls after one warm-up, for
  - genforge.data.degrade.imresize (float32 1 x 3 x H x W tensor, antialiased when shrinking),
  - torch.nn.functional.interpolate(mode="bicubic", antialias=True) on the same tensor, to the same size,
  - PIL.Image.resize(BICUBIC) on the same image as 8-bit RGB (Pillow's own threads: one).
The three alternate call by call, so a busy neighbour on a shared machine slows them alike. PyTorch's
antialiased bicubic uses MATLAB's and Pillow's cubic (a = -0.5), so inside the image the two float
results agree to rounding; they part at the borders (MATLAB mirrors the image, PyTorch renormalises the
clipped kernel), which the last-but-one column shows. Writes bench/results/imresize.md."""

import argparse
import statistics
import time

from common import RESULTS, machine_line  # noqa: E402  (path and OpenMP first)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from genforge.data.degrade import imresize  # noqa: E402

TARGET_S = 0.5


def contenders(x: torch.Tensor, scale: float) -> dict:
    """name -> a call that resizes the image by `scale`; all produce imresize's output size."""
    out_h, out_w = imresize(x, scale).shape[-2:]
    pil = Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return {
        "imresize": lambda: imresize(x, scale),
        "interpolate": lambda: F.interpolate(x, size=(out_h, out_w), mode="bicubic", align_corners=False,
                                             antialias=True),
        "pil": lambda: pil.resize((out_w, out_h), Image.Resampling.BICUBIC),
    }


def time_alternating(calls: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call, each call warmed up once, the calls interleaved."""
    times = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--scales", default="0.25,0.5,2")
    p.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    rows, default_threads = [], torch.get_num_threads()
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        for scale in map(float, args.scales.split(",")):
            calls = contenders(x, scale)
            t = time_alternating(calls, args.repeats)
            ours, theirs = calls["imresize"](), calls["interpolate"]()
            apart = float((ours - theirs).abs().mean())
            rows.append({"threads": threads, "scale": scale, "out": tuple(ours.shape[-2:]), **t, "apart": apart})
            print(rows[-1])
    torch.set_num_threads(default_threads)  # machine_line reports the default; the table, each row's
    lines = [f"A {args.size}x{args.size} RGB image, float32 1 x 3 x H x W (Pillow: the same image as 8-bit RGB); "
             f"median of {args.repeats} calls after one warm-up, the three alternating call by call. Target: "
             f"imresize well under {TARGET_S} s. Command: `python bench/imresize.py`. {machine_line()}.", "",
             "| torch threads | scale | output | imresize ms | F.interpolate bicubic antialias ms | "
             "imresize / F.interpolate | PIL BICUBIC ms (uint8) | "
             "mean abs(imresize - F.interpolate), values in [0, 1] | "
             f"imresize < {TARGET_S} s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        h, w = r["out"]
        lines.append(f"| {r['threads']} | {r['scale']:g} | {w}x{h} | {r['imresize'] * 1e3:.1f} | "
                     f"{r['interpolate'] * 1e3:.1f} | {r['imresize'] / r['interpolate']:.2f}x | "
                     f"{r['pil'] * 1e3:.1f} | {r['apart']:.1e} | {'yes' if r['imresize'] < TARGET_S else 'NO'} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "imresize.md").write_text("# imresize speed\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
