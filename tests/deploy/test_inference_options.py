"""The GPU-facing inference options, checked on the CPU: the auto tile size (free memory given or
mocked), tiled translation against untiled, --half and --provider cuda refused where they cannot
run, and the command-line flags."""

import argparse

import numpy as np
import pytest
import torch

from genforge.cli import build_parser, main
from genforge.deploy import infer
from genforge.deploy.export import OnnxRunner, execution_providers, export_onnx
from genforge.deploy.files import check_tile, tile_option
from genforge.deploy.infer import AUTO, MAX_AUTO_TILE, MIN_TILE, auto_tile_size, load, tiled
from genforge.deploy.translator import Translator
from genforge.deploy.upscaler import Upscaler
from genforge.errors import UserError
from tests.conftest import random_folder, run_cli


@pytest.fixture(scope="module")
def sr_folder(tmp_path_factory):
    return random_folder(tmp_path_factory.mktemp("sr"), "superres", "isrnet")


# --- the auto tile size ------------------------------------------------------------------------
def test_auto_tile_size_fits_the_budget():
    gib = 2 ** 30
    tile = auto_tile_size(gib, 1000, multiple=4)
    assert tile == 732 and tile % 4 == 0  # isqrt(0.5 GiB / 1000 B) = 732
    assert (tile + 4) ** 2 * 1000 > gib / 2 >= tile ** 2 * 1000
    # the read window (tile + overlap rounded up to the multiple, both sides) is what must fit
    assert auto_tile_size(gib, 1000, multiple=4, overlap=10) == 732 - 2 * 12
    assert auto_tile_size(4 * gib, 1000, multiple=4) > tile > auto_tile_size(gib, 4000, multiple=4)
    assert auto_tile_size(gib, 1000, multiple=4, fraction=1.0) > tile
    assert auto_tile_size(80 * gib, 100) == MAX_AUTO_TILE  # a large GPU: capped
    assert auto_tile_size(1000, 1000) == MIN_TILE  # nearly no memory: the smallest tile, not 0
    assert auto_tile_size(1000, 1000, multiple=256) == 256
    assert auto_tile_size(-5, 1000) == MIN_TILE  # a bad reading never gives 0 (= whole image)


def test_cuda_available_bytes_counts_the_allocators_unused_cache(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3_000, 10_000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 700)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 200)
    assert infer.cuda_available_bytes(torch.device("cuda")) == 3_500


def test_tile_choice_per_device(sr_folder, monkeypatch):
    up = Upscaler(str(sr_folder), device="cpu")
    # CPU: the whole image when it fits --max-memory, else a tile from it (tests/deploy/test_memory_budget.py)
    assert up.tile_size(AUTO, up._run, 3, 8, shape=(32, 32)) == 0
    up.max_memory = None
    assert up.tile_size(AUTO, up._run, 3, 8) == 0  # no budget: the whole image
    assert up.tile_size(0, up._run, 3, 8) == 0 and up.tile_size(64, up._run, 3, 8) == 64
    measured = []
    monkeypatch.setattr(infer, "measure_bytes_per_pixel", lambda run, c, m, d: measured.append(c) or 500.0)
    monkeypatch.setattr(infer, "cuda_available_bytes", lambda device: 2 ** 28)
    up.device = torch.device("cuda")  # only the choice is exercised: nothing runs on it
    tile = up.tile_size(AUTO, up._run, 3, 8, key=3)
    assert tile == auto_tile_size(2 ** 28, 500.0, multiple=up.multiple, overlap=8) and tile % up.multiple == 0
    assert up.tile_size(AUTO, up._run, 3, 8, key=3) == tile and measured == [3]  # measured once per key
    assert up.tile_size(100, up._run, 3, 8) == 100 and up.tile_size(0, up._run, 3, 8) == 0


def test_auto_tile_halves_when_out_of_memory(sr_folder):
    up = Upscaler(str(sr_folder), device="cpu")
    calls = []

    def run(x):  # a pointwise x2 'network' that runs out of memory above 24x24 pixels
        calls.append(tuple(x.shape[-2:]))
        if x.shape[-2] * x.shape[-1] > 24 * 24:
            raise torch.OutOfMemoryError("fake")
        return x.repeat_interleave(2, -2).repeat_interleave(2, -1)

    x = torch.rand(3, 40, 36)
    up.max_memory = None  # the whole image first, as on CUDA with plenty of free memory
    whole = tiled(lambda t: t.repeat_interleave(2, -2).repeat_interleave(2, -1), x, tile=0, overlap=0, scale=2,
                  multiple=1, peak=255)
    up.multiple = 1
    assert np.array_equal(up.run_tiled(run, x, tile=AUTO, overlap=0, scale=2, peak=255), whole)
    assert calls[0] == (40, 36) and max(h * w for h, w in calls[1:]) <= 24 * 24
    with pytest.raises(UserError, match="out of memory with --tile 36: pass a smaller --tile"):
        up.run_tiled(run, x, tile=36, overlap=0, scale=2, peak=255)  # balanced tiles of 20 x 36


# --- translation tiles -------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_translator_tiles_equal_untiled_without_instance_norm(tmp_path, norm):
    folder = random_folder(tmp_path, "cyclegan", "resnet", norm=norm)
    tr = Translator(str(folder), device="cpu")
    if norm == "batch":  # eval-mode statistics that are not the identity, so they are exercised
        gen = torch.Generator().manual_seed(1)
        for m in tr.module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    image = np.random.default_rng(0).integers(0, 256, (45, 54, 3), dtype=np.uint8)
    whole = tr.translate_array(image, tile=0)
    overlap = tr._overlaps["a2b"] if "a2b" in tr._overlaps else None
    pieces = tr.translate_array(image, tile=MIN_TILE)
    assert 0 < tr._overlaps["a2b"] <= 128 and overlap is None  # estimated only when tiling
    assert pieces.shape == whole.shape == (45, 54, 3)
    assert np.array_equal(pieces, whole)
    both = tr.translate_array(image, direction="b2a", tile=MIN_TILE)
    assert np.array_equal(both, tr.translate_array(image, direction="b2a", tile=0))
    seams = tr.translate_array(image, tile=MIN_TILE, overlap=0)  # no context: the tiles show
    assert not np.array_equal(seams, whole)


def test_translator_tiles_instance_norm_and_label_maps(tmp_path):
    # instance norm normalises each tile by its own statistics: the shape and range hold, not equality
    tr = Translator(str(random_folder(tmp_path, "cyclegan", "resnet")), device="cpu")
    image = np.random.default_rng(1).integers(0, 65536, (40, 36, 4), dtype=np.uint16)
    out = tr.translate_array(image, tile=MIN_TILE)
    assert out.shape == (40, 36, 4) and out.dtype == np.uint16 and np.array_equal(out[..., 3], image[..., 3])
    spade = Translator(str(random_folder(tmp_path, "spade", "spade")), device="cpu")
    ids = np.random.default_rng(2).integers(0, spade.label_nc, (36, 44), dtype=np.uint8)
    assert spade.translate_array(ids, tile=MIN_TILE, seed=3).shape == (36, 44, 3)


# --- --half and --provider ---------------------------------------------------------------------
def test_half_is_refused_on_cpu(sr_folder, tmp_path, capsys):
    with pytest.raises(UserError, match="--half needs a CUDA device"):
        load(str(sr_folder), device="cpu", half=True)
    translator = random_folder(tmp_path, "pix2pix", "unet")
    generator = random_folder(tmp_path, "gan", "dcgan")
    for argv in (["translate", str(translator), str(tmp_path), "-o", str(tmp_path / "t"), "--half", "--device", "cpu"],
                 ["sample", str(generator), "-o", str(tmp_path / "g.png"), "--half", "--device", "cpu"]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --half needs a CUDA device") and "\n" not in err
    assert not (tmp_path / "t").exists() and not (tmp_path / "g.png").exists()


def test_cli_upscale_half_on_cpu_is_one_line(sr_folder, tmp_path):
    res = run_cli("upscale", sr_folder, tmp_path, "-o", tmp_path / "out", "--half", "--device", "cpu")
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0, res.stderr
    assert "--half needs a CUDA device" in res.stderr


@pytest.fixture(scope="module")
def onnx_file(sr_folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "sr.onnx"
    export_onnx(str(sr_folder), path)
    return path


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available")
def test_provider_cuda_refused_when_not_installed(onnx_file, sr_folder, monkeypatch):
    import onnxruntime as ort
    assert execution_providers("cpu") == ["CPUExecutionProvider"]
    assert OnnxRunner(onnx_file).provider == "cpu"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        missing = r"^ONNX Runtime's CUDA provider is not installed: pip install onnxruntime-gpu$"
        with pytest.raises(UserError, match=missing):
            OnnxRunner(onnx_file, provider="cuda")
        with pytest.raises(UserError, match="CUDA provider is not installed"):
            load(str(onnx_file), device="cuda")  # device cuda asks for the CUDA provider
    # listed but unable to start (no GPU, no CUDA libraries): refused rather than run on the CPU silently
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort.InferenceSession, "get_providers", lambda self: ["CPUExecutionProvider"])
    with pytest.raises(UserError, match="CUDA provider could not start"):
        OnnxRunner(onnx_file, provider="cuda")
    with pytest.raises(UserError, match="applies to .onnx models only"):
        infer.open_model(str(sr_folder), "cpu", provider="cuda")


def test_onnx_models_keep_their_precision_and_tile_on_cpu(onnx_file):
    up = load(str(onnx_file), device="cpu")
    assert up.tile_size(AUTO, up._run, 3, 8, shape=(32, 32)) == 0 and not up.on_cuda
    with pytest.raises(UserError, match="--half applies to PyTorch models"):
        up.use_half()
    up.module.provider = "cuda"  # what a CUDA session reports: auto tiles then, at a fixed size
    assert up.tile_size(AUTO, up._run, 3, 8) == infer.ONNX_CUDA_TILE


def test_cli_provider_cuda_for_onnx(onnx_file, tmp_path, capsys):
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("ONNX Runtime's CUDA provider is installed here")
    assert main(["upscale", str(onnx_file), str(tmp_path), "-o", str(tmp_path / "o"), "--provider", "cuda"]) == 1
    assert capsys.readouterr().err.strip() == ("error: ONNX Runtime's CUDA provider is not installed: "
                                                "pip install onnxruntime-gpu")


# --- the flags ---------------------------------------------------------------------------------
def test_flags_parse_with_their_defaults():
    parser = build_parser()
    up = parser.parse_args(["upscale", "m", "in.png", "-o", "out"])
    assert (up.tile, up.half, up.provider, up.overlap) == (AUTO, False, None, None)
    assert parser.parse_args(["upscale", "m", "in.png", "-o", "o", "--tile", "0"]).tile == 0
    assert parser.parse_args(["upscale", "m", "in.png", "-o", "o", "--tile", "256", "--half"]).half
    assert parser.parse_args(["eval-sr", "m", "--benchmark", "b", "--scale", "2"]).tile == AUTO
    assert parser.parse_args(["eval-sr", "m", "--benchmark", "b", "--scale", "2", "--tile", "64"]).tile == 64
    tr = parser.parse_args(["translate", "m", "in.png", "-o", "o", "--tile", "128", "--overlap", "8",
                            "--provider", "cuda"])
    assert (tr.tile, tr.overlap, tr.provider, tr.half) == (128, 8, "cuda", False)
    assert parser.parse_args(["translate", "m", "in.png", "-o", "o"]).tile == AUTO
    sample = parser.parse_args(["sample", "m", "-o", "g.png", "--half", "--provider", "cpu"])
    assert sample.half and sample.provider == "cpu"
    with pytest.raises(SystemExit):
        parser.parse_args(["upscale", "m", "in.png", "-o", "o", "--provider", "tpu"])
    with pytest.raises(argparse.ArgumentTypeError):
        tile_option("big")
    for bad in (-1, 8):
        with pytest.raises(UserError, match="--tile must be auto, 0"):
            check_tile(bad)
    for good in (AUTO, 0, 16, 4096):
        check_tile(good)


@pytest.mark.parametrize("kind,name", [("superres", "isrnet"), ("cyclegan", "resnet"), ("spade", "spade"),
                                       ("gan", "dcgan")])
def test_half_casts_around_the_network(tmp_path, kind, name):
    """What use_half sets up, run on the CPU in bfloat16 (use_half itself refuses the CPU): every
    call the wrapper makes meets the network's dtype, and outputs come back as float32."""
    wrapper = load(str(random_folder(tmp_path, kind, name)), device="cpu")
    rng = np.random.default_rng(0)
    if kind == "gan":
        full = wrapper.generate(4, seed=1)
    elif kind == "superres":
        image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        full = wrapper.upscale_array(image)
    else:
        image = rng.integers(0, wrapper.label_nc, (36, 32), dtype=np.uint8) if wrapper.label_nc else \
            rng.integers(0, 256, (36, 32, 3), dtype=np.uint8)
        full = wrapper.translate_array(image, seed=2 if wrapper.use_style else None)
    infer.half_precision(wrapper.half_modules(), torch.bfloat16)
    wrapper.dtype = torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for m in wrapper.half_modules() for p in m.parameters())
    if kind == "gan":
        half = wrapper.generate(4, seed=1)
        assert half.dtype == torch.float32 and (half - full).abs().max() < 0.1
        return
    if kind == "superres":
        half = wrapper.upscale_array(image)
    else:
        half = wrapper.translate_array(image, seed=2 if wrapper.use_style else None)
        if wrapper.two_way:
            assert wrapper.translate_array(image, direction="b2a").shape == half.shape
        if wrapper.use_style:
            style = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            assert wrapper.style_code(style, None).dtype == torch.float32
    assert half.dtype == full.dtype and half.shape == full.shape
    assert np.abs(half.astype(int) - full.astype(int)).mean() < 8  # bfloat16 rounding, not a broken path
