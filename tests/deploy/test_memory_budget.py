"""`--tile auto` on the CPU under a memory budget (--max-memory): tiles chosen from it, results equal
to the untiled ones where the overlap covers the receptive field, tiles converted from and written
into the integer arrays (no whole-image float copy), the option's parsing, and stopping tiled work."""

import threading

import numpy as np
import pytest
import torch
from torch import nn

from genforge.data.degrade import imresize
from genforge.deploy import tiling
from genforge.deploy.files import add_output_options, add_tile_option
from genforge.deploy.infer import AUTO, LazyImage, load, to_tensor
from genforge.deploy.tiling import (
    MIN_MAX_MEMORY,
    Stopped,
    image_bytes,
    measure_cpu_bytes_per_pixel,
    parse_memory,
    stoppable,
    tiled,
    working_set,
)
from genforge.deploy.upscaler import ALPHA_TILE
from tests.conftest import random_folder, run_cli

MIB = 2 ** 20


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    return load(str(random_folder(tmp_path_factory.mktemp("sr"), "superres", "isrnet")), device="cpu")


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal but for float summation order: a tile is convolved at another width (tests/tasks/test_superres)."""
    diff = np.abs(a.astype(int) - b.astype(int))
    return a.shape == b.shape and a.dtype == b.dtype and diff.max() <= 1 and (diff > 0).mean() < 1e-3


def with_budget(up, monkeypatch, per_pixel: float, max_memory: int = MIN_MAX_MEMORY):
    """The wrapper under `max_memory` with its bytes per pixel fixed, and the crops its network sees."""
    monkeypatch.setattr(up, "max_memory", max_memory)
    monkeypatch.setattr(up, "_bytes_per_pixel", {3: per_pixel, 1: per_pixel})
    crops = []
    real = up._run

    def run(x):
        crops.append(tuple(x.shape[-2:]))
        return real(x)

    monkeypatch.setattr(up, "_run", run)
    return crops


def test_auto_tiles_above_the_budget_and_matches_untiled(up, monkeypatch):
    image = (np.random.default_rng(0).random((90, 70, 3)) * 255).astype(np.uint8)
    whole = up.upscale_array(image, tile=0)
    per_pixel = MIN_MAX_MEMORY / (60 * 60)  # a 60x60 read window fills the budget
    crops = with_budget(up, monkeypatch, per_pixel)
    pieces = up.upscale_array(image)  # tile=auto
    assert len(crops) > 1 and max(h * w for h, w in crops) * per_pixel <= working_set(
        MIN_MAX_MEMORY, image_bytes(LazyImage(image, None, 3), up.scale, 255))
    assert close(pieces, whole)
    deep = image.astype(np.uint16) * 257  # tiles quantised into a 16-bit output
    out16 = up.upscale_array(deep)
    whole16 = up.upscale_array(deep, tile=0)
    assert out16.dtype == np.uint16 and np.abs(out16.astype(int) - whole16.astype(int)).max() <= 3
    crops.clear()
    small = up.upscale_array(image[:20, :20])  # fits the budget: one call on the whole image
    assert crops == [(20, 20)] and np.array_equal(small, up.upscale_array(image[:20, :20], tile=0))


def test_no_budget_means_the_whole_image(up, monkeypatch):
    crops = with_budget(up, monkeypatch, 1e9, max_memory=None)
    image = np.zeros((40, 30, 3), np.uint8)
    assert up.tile_size(AUTO, up._run, 3, 8, shape=(40, 30)) == 0
    up.upscale_array(image)
    assert crops == [(40, 30)]


def test_grey_and_alpha_inputs_tile_too(up, monkeypatch):
    rng = np.random.default_rng(1)
    grey = (rng.random((80, 64)) * 255).astype(np.uint8)
    whole = up.upscale_array(grey, tile=0)
    with_budget(up, monkeypatch, MIN_MAX_MEMORY / (50 * 50))
    assert close(up.upscale_array(grey), whole) and whole.shape == (160, 128, 1)
    # alpha is bicubic in pieces of ALPHA_TILE with enough overlap for its 4 taps: equal to the whole resize
    rgba = (rng.random((ALPHA_TILE + 24, 20, 4)) * 255).astype(np.uint8)
    out = up.upscale_array(rgba)
    expected = imresize(to_tensor(rgba[:, :, 3:], 255)[None], scale=2, antialias=False)[0]
    expected = np.round(expected.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert out.shape == (2 * rgba.shape[0], 40, 4) and close(out[:, :, 3:], expected)


def test_translator_auto_tiles_under_the_budget(tmp_path, monkeypatch):
    tr = load(str(random_folder(tmp_path, "cyclegan", "resnet", norm="none")), device="cpu")
    image = (np.random.default_rng(2).random((120, 100, 3)) * 255).astype(np.uint8)
    whole = tr.translate_array(image, tile=0)
    monkeypatch.setattr(tr, "max_memory", MIN_MAX_MEMORY)
    monkeypatch.setattr(tr, "_bytes_per_pixel", {"a2b": MIN_MAX_MEMORY / (tr.tile_overlap(
        tr._runner(tr.module, None), 3, "a2b") * 2 + 40) ** 2})
    assert tr.tile_size(AUTO, None, 3, tr._overlaps["a2b"], key="a2b", shape=(120, 100)) > 0
    assert close(tr.translate_array(image), whole)


def test_crops_are_converted_one_at_a_time():
    array = np.arange(50 * 40 * 3, dtype=np.uint8).reshape(50, 40, 3)
    converted = []

    def convert(a):
        converted.append(a.shape[:2])
        return to_tensor(a, 255)

    run = lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2)  # noqa: E731  (a pointwise x2 net)
    out = tiled(run, LazyImage(array, convert, 3), tile=16, overlap=2, scale=2, multiple=4, peak=255)
    whole = tiled(run, to_tensor(array, 255), tile=0, overlap=0, scale=2, multiple=1, peak=255)
    assert np.array_equal(out, whole) and out.dtype == np.uint8
    assert len(converted) > 4 and all(h < 50 and w < 40 for h, w in converted)
    # balanced pieces starting at multiples of 4: 50 rows in at most 16 are 12, 12, 12, 14, not 16, 16, 16, 2
    assert tiling._spans(50, 16, 4) == [(0, 12), (12, 24), (24, 36), (36, 50)]
    assert tiling._spans(40, 24, 4) == [(0, 20), (20, 40)] and tiling._spans(10, 16, 4) == [(0, 10)]


def test_cpu_bytes_per_pixel_counts_the_tensors_held_at_once():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)).eval()
    per_pixel = measure_cpu_bytes_per_pixel(net, 3, 1)
    # two 8-channel float maps are alive at once (the first conv's output and the next one's), 32 B/px each
    assert 2 * 32 * tiling.CPU_MARGIN <= per_pixel <= 4 * 32 * tiling.CPU_MARGIN
    assert measure_cpu_bytes_per_pixel(net, 3, 1) == per_pixel  # repeatable: counted, not sampled


def test_max_memory_option_is_parsed_and_validated():
    assert parse_memory("256M") == 256 * MIB and parse_memory("1G") == 1024 * MIB
    assert parse_memory("1.5g") == 1536 * MIB and parse_memory("512MiB") == 512 * MIB
    assert parse_memory(str(100 * MIB)) == 100 * MIB and parse_memory("64 mb") == 64 * MIB
    for bad in ("abc", "-1G", "1X", "", "1M", "G"):
        with pytest.raises(ValueError):
            parse_memory(bad)
    import argparse
    p = argparse.ArgumentParser()
    add_tile_option(p)
    add_output_options(p, ext_help="")
    assert p.parse_args([]).max_memory == tiling.DEFAULT_MAX_MEMORY
    assert p.parse_args(["--max-memory", "2G"]).max_memory == 2048 * MIB


def test_cli_refuses_a_bad_budget_in_one_line(tmp_path):
    res = run_cli("upscale", "isrnet-x2", str(tmp_path / "none.png"), "-o", str(tmp_path / "o"), "--max-memory",
                  "lots", timeout=120)
    assert res.returncode == 2 and "--max-memory" in res.stderr and "Traceback" not in res.stderr
    assert "expected a size such as 256M" in res.stderr


def test_stopped_work_ends_at_the_next_tile():
    calls = []
    stop = threading.Event()

    def run(t):
        calls.append(t.shape)
        stop.set()  # asked to stop while the first tile runs
        return t

    with stoppable(stop), pytest.raises(Stopped):
        tiled(run, torch.rand(3, 64, 64), tile=16, overlap=0, scale=1, multiple=1, peak=255)
    assert len(calls) == 1
    assert tiled(run, torch.rand(3, 8, 8), tile=16, overlap=0, scale=1, multiple=1, peak=255).shape == (8, 8, 3)
