"""Tiling with overlap, and how large a tile `--tile auto` picks: on CUDA from the free device
memory, on the CPU from a working-set budget (`--max-memory`), both at the network's measured
bytes per input pixel. Tiles are read from the 8/16-bit input array and converted to float one at
a time (LazyImage), and each tile's centre is quantised straight into the final 8/16-bit output:
no float copy of the whole input or output exists, so memory is bounded by the tile plus the two
integer arrays, whatever the image's size."""

import argparse
import math
import re
import threading
import weakref
from contextlib import contextmanager
from typing import Callable

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

AUTO = "auto"
MIN_TILE = 16
MAX_AUTO_TILE = 2048  # GPU throughput is saturated far below this; it bounds each tile's host-side float copy
CUDA_BUDGET_FRACTION = 0.5  # headroom for allocator fragmentation, cuDNN's size-dependent workspace, neighbours
PROBE_SIDE = 128
ONNX_CUDA_TILE = 512  # ONNX Runtime's arena is invisible to torch's allocator, so nothing can be measured

DEFAULT_MAX_MEMORY = 384 * 2 ** 20
"""What `--max-memory` defaults to on the CPU: the image's own 8/16-bit arrays (input and output)
plus what the network's tensors take at once on a tile. The process adds torch and the model
(~0.6 GB for `genforge upscale` here), so the upscale itself peaks near 1 GB whatever the image
(bench/upscale_memory.py); the price is tiles of ~200-330 pixels for isrnet-x2 on large images."""
MIN_MAX_MEMORY = 16 * 2 ** 20
MIN_WORKING_SET = 64 * 2 ** 20  # a huge image's arrays can take the whole budget: tiles still get this (or it all)
CPU_MARGIN = 1.25  # over the tensors counted: allocator rounding and fragmentation, oneDNN scratch, the tile's copies
ONNX_CPU_BYTES_PER_PIXEL = 2048.0  # ONNX Runtime's arena cannot be observed from Python: a conservative figure


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 2 ** 20
_heap_bounded = False


def bound_heap() -> None:
    """Have glibc's malloc map every allocation over MMAP_THRESHOLD on its own and unmap it when
    freed, for the rest of the process. By default it raises that threshold to the largest block
    freed so far (up to 32 MB), after which a network's tensors of a few MB land in the heap,
    fragment it and stay resident: tile after tile of varying sizes then held ~2x the working set
    (bench/upscale_memory.py). A no-op off glibc."""
    global _heap_bounded
    if _heap_bounded:
        return
    _heap_bounded = True
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


def quantise(y: torch.Tensor, peak: int, *, signed: bool = False) -> np.ndarray:
    """C x H x W float in [0, 1] (or [-1, 1] when signed) -> H x W x C uint8/uint16, clamped."""
    y = ((y.float().clamp(-1, 1) + 1) * (peak / 2)) if signed else y.float().clamp(0, 1) * peak
    dtype = np.uint16 if peak > 255 else np.uint8
    return np.ascontiguousarray(y.round_().permute(1, 2, 0).cpu().numpy().astype(dtype))


class LazyImage:
    """An H x W [x C] integer array that becomes a C x h x w float tensor one crop at a time
    (convert: the crop's array -> its tensor), so that tiling never holds a float copy of the
    whole image. `shape` is (channels, H, W), as a tensor's; x[:, rows, cols] converts that crop."""

    def __init__(self, array: np.ndarray, convert: Callable[[np.ndarray], torch.Tensor], channels: int):
        self.array, self.convert = array, convert
        self.shape = (channels, *array.shape[:2])

    def __getitem__(self, index) -> torch.Tensor:
        _, rows, cols = index
        return self.convert(self.array[rows, cols])

    def whole(self) -> torch.Tensor:
        return self.convert(self.array)


class Stopped(Exception):
    """The caller asked the running call to stop (the service, after answering 504)."""


_job = threading.local()


@contextmanager
def stoppable(stop: threading.Event | None):
    """Within it (in this thread), tiled work raises Stopped at its next tile once `stop` is set."""
    previous = getattr(_job, "stop", None)
    _job.stop = stop
    try:
        yield
    finally:
        _job.stop = previous


def checkpoint() -> None:
    """Raise Stopped if this thread's job was asked to stop (see stoppable); else nothing."""
    stop = getattr(_job, "stop", None)
    if stop is not None and stop.is_set():
        raise Stopped("stopped")


def _crop(x, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    return x[:, top:bottom, left:right][None]


def _spans(size: int, tile: int, multiple: int) -> list[tuple[int, int]]:
    """(start, end) of the fewest pieces of at most `tile` covering `size`, of nearly equal sizes
    (no sliver pays a full overlap), each starting at a multiple of `multiple` (tile is one)."""
    count = math.ceil(size / tile)
    starts = [i * size // count // multiple * multiple for i in range(count)]
    return list(zip(starts, starts[1:] + [size]))


def tiled(run: Callable[[torch.Tensor], torch.Tensor], x, *, tile: int, overlap: int,
          scale: int, multiple: int, peak: int, signed: bool = False) -> np.ndarray:
    """run(1 x C x h x w) -> 1 x C' x sh x sw over pieces of at most tile x tile of x (C x H x W: a
    tensor or a LazyImage), each read with `overlap` extra pixels on every side (rounded up to the
    size multiple, so strided levels stay aligned) and only its centre kept, quantised into the
    output array: the result equals the untiled one wherever the overlap covers the receptive
    field. Memory is bounded by the tile, whatever the image's size."""
    _, H, W = x.shape
    s, m = scale, multiple
    checkpoint()
    if not tile or (H <= tile and W <= tile):
        whole = x.whole() if isinstance(x, LazyImage) else x
        return quantise(run(whole[None])[0], peak, signed=signed)
    tile = max(m, tile - tile % m)
    pad = overlap + (-overlap) % m
    out = None
    for top, bottom in _spans(H, tile, m):
        for left, right in _spans(W, tile, m):
            checkpoint()
            t0, l0 = max(0, top - pad), max(0, left - pad)
            y = run(_crop(x, t0, min(H, bottom + pad), l0, min(W, right + pad)))[0]
            core = quantise(y[:, (top - t0) * s:(bottom - t0) * s, (left - l0) * s:(right - l0) * s], peak,
                            signed=signed)
            del y
            if out is None:
                out = np.empty((H * s, W * s, core.shape[2]), dtype=core.dtype)
            out[top * s:bottom * s, left * s:right * s] = core
    return out


# --- how large a tile: `auto` ------------------------------------------------------------------
def image_bytes(x, scale: int, peak: int) -> int:
    """What an image being processed holds outside the network: its input (the integer array of a
    LazyImage, else the float tensor) and the integer output array (as many channels as the input)."""
    c, h, w = x.shape
    held = x.array.nbytes if isinstance(x, LazyImage) else x.numel() * x.element_size()
    return held + c * h * w * scale * scale * (2 if peak > 255 else 1)


def working_set(max_memory: int, held: int) -> int:
    """The CPU budget left for the network's tensors once the image's arrays (`held`) are counted."""
    return max(max_memory - held, min(MIN_WORKING_SET, max_memory))


def auto_tile_size(available_bytes: float, bytes_per_pixel: float, *, multiple: int = 1, overlap: int = 0,
                   fraction: float = CUDA_BUDGET_FRACTION) -> int:
    """The largest square tile (input pixels a side, a multiple of `multiple`) whose read window, the
    tile plus `overlap` (rounded up to the multiple, as `tiled` does) on each side, fits `fraction`
    of the available memory at `bytes_per_pixel`; at least MIN_TILE, at most MAX_AUTO_TILE. A pure
    function of the budget, so a CPU memory budget can use it as well as the GPU's free memory."""
    pad = overlap + (-overlap) % multiple
    window = math.isqrt(int(max(available_bytes, 0) * fraction / max(bytes_per_pixel, 1e-9)))
    tile = min(window - 2 * pad, MAX_AUTO_TILE)
    tile -= tile % multiple
    return max(tile, MIN_TILE + (-MIN_TILE) % multiple)


def cuda_available_bytes(device: torch.device) -> int:
    """Free device memory plus what torch's caching allocator holds unused: both can take a tile."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def _probe(channels: int, multiple: int) -> tuple[torch.Tensor, int]:
    side = PROBE_SIDE + (-PROBE_SIDE) % multiple
    return torch.zeros(1, channels, side, side), side * side


def measure_bytes_per_pixel(run: Callable[[torch.Tensor], torch.Tensor], channels: int, multiple: int,
                            device: torch.device) -> float:
    """Peak CUDA memory of one call of run on a PROBE_SIDE probe, per input pixel. Measured rather
    than derived from the layers, so that skip connections, the bicubic base, the chroma path, the
    output and cuDNN's workspace all count; the probe's fixed costs only make it conservative.
    Convolutional networks grow linearly with the pixels; an attention block grows faster, which
    the budget's headroom and run_tiled's halving on out-of-memory absorb."""
    probe, pixels = _probe(channels, multiple)
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run(probe)
    torch.cuda.synchronize(device)
    return max(torch.cuda.max_memory_allocated(device) - base, 1) / pixels


class _LiveTensors(TorchDispatchMode):
    """Counts the bytes of every CPU tensor storage created under it while it is alive (a weak
    reference per storage says when it dies), and the peak of that sum."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # else torch wraps __torch_dispatch__ with a dynamo guard: importing dynamo costs ~150 MB

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.sizes: dict[int, int] = {}

    def _freed(self, key: int) -> None:
        self.live -= self.sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.sizes:
                    self.sizes[key] = storage.nbytes()
                    self.live += self.sizes[key]
                    weakref.finalize(storage, self._freed, key)
        self.peak = max(self.peak, self.live)
        return out


def measure_cpu_bytes_per_pixel(run: Callable[[torch.Tensor], torch.Tensor], channels: int,
                                multiple: int) -> float:
    """Peak bytes of the tensors one call of run on a PROBE_SIDE probe holds at once, per input
    pixel, times CPU_MARGIN. Counted op by op (a dispatch mode), so unlike the process's RSS it is
    exact, repeatable and blind to other threads; what it cannot see (the allocator's rounding,
    oneDNN's scratch space) is what the margin is for. bench/upscale_memory.py checks it against the
    peak RSS of real runs."""
    probe, pixels = _probe(channels, multiple)
    live = _LiveTensors()
    with torch.inference_mode(), live:
        run(probe)
    return max(live.peak, 1) * CPU_MARGIN / pixels


_UNITS = {"": 1, "b": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}


def parse_memory(text: str) -> int:
    """'256M', '1.5G', '512MiB', '800mb' or a number of bytes -> bytes (binary units); ValueError
    for anything else or below MIN_MAX_MEMORY."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text).lower())
    if not match:
        raise ValueError(f"expected a size such as 256M, 1G or a number of bytes, got {text!r}")
    value = int(float(match.group(1)) * _UNITS[match.group(2)])
    if value < MIN_MAX_MEMORY:
        raise ValueError(f"{text!r} is below the smallest budget, {MIN_MAX_MEMORY // 2 ** 20}M")
    return value


def memory_option(text: str) -> int:
    """argparse type of --max-memory (see parse_memory)."""
    try:
        return parse_memory(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
