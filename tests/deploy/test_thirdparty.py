"""Third-party super-resolution weights through spandrel: `genforge upscale --weights FILE`.

The weights are built here from spandrel's own architecture classes with random values (nothing
is downloaded), saved the ways other projects ship them, and read back through the same Upscaler
as genforge's models."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from genforge.data.io import read_image, write_image
from genforge.deploy.thirdparty import SpandrelSR, load_weights
from genforge.deploy.upscaler import Upscaler
from genforge.errors import UserError
from tests.conftest import run_cli

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid")  # SwinIR built here, as spandrel builds it


def tiny_networks() -> dict:
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.SwinIR import SwinIR
    torch.manual_seed(0)
    return {
        # name: (network, scale, spandrel's architecture name)
        "esrgan": (ESRGAN(num_filters=8, num_blocks=1, scale=4), 4, "ESRGAN"),
        "compact": (Compact(num_feat=8, num_conv=2, upscale=2), 2, "RealESRGAN Compact"),
        "swinir": (SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, mlp_ratio=2.0,
                          upscale=2, upsampler="pixelshuffledirect"), 2, "SwinIR"),
    }


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """{name: (file, scale, architecture)} in the formats found in the wild."""
    root = tmp_path_factory.mktemp("weights")
    out = {}
    for name, (net, scale, arch) in tiny_networks().items():
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        torch.save(state, root / f"{name}.pth")
        save_file(state, str(root / f"{name}.safetensors"))
        out[name] = (root / f"{name}.pth", scale, arch)
        out[f"{name}-st"] = (root / f"{name}.safetensors", scale, arch)
    esrgan = tiny_networks()["esrgan"][0].state_dict()
    torch.save({"params_ema": esrgan, "params": esrgan, "iter": 5}, root / "esrgan_basicsr.pth")
    out["esrgan-wrapped"] = (root / "esrgan_basicsr.pth", 4, "ESRGAN")
    torch.save({"state_dict": {f"module.{k}": v for k, v in esrgan.items()}, "epoch": 3}, root / "esrgan.ckpt")
    out["esrgan-ckpt"] = (root / "esrgan.ckpt", 4, "ESRGAN")
    return out


@pytest.fixture
def rgba(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    path = tmp_path / "in.png"
    write_image(path, image)
    return path, image


@pytest.mark.parametrize("name", ["esrgan", "esrgan-st", "compact", "compact-st", "swinir", "swinir-st",
                                  "esrgan-wrapped", "esrgan-ckpt"])
def test_loads_and_detects_scale(weights, name):
    path, scale, arch = weights[name]
    source, module, device = load_weights(path, "cpu")
    assert isinstance(module, SpandrelSR) and module.scale == scale and module.channels == 3
    assert source.config == {"model": {"name": f"spandrel:{arch}", "scale": scale}, "task": {"kind": "superres"}}
    up = Upscaler(str(path), opened=(source, module, device))
    assert up.scale == scale and up.default_overlap == 16
    y = up.upscale_array(np.full((10, 12, 3), 128, np.uint8))
    assert y.shape == (10 * scale, 12 * scale, 3) and y.dtype == np.uint8


@pytest.mark.parametrize("name", ["esrgan", "compact", "swinir"])
def test_upscaler_tiles_alpha_and_16_bit(weights, name, rgba):
    path, scale, _ = weights[name]
    up = Upscaler(str(path), opened=load_weights(path, "cpu"))
    _, image = rgba
    whole = up.upscale_array(image)
    assert whole.shape == (20 * scale, 24 * scale, 4) and whole.dtype == np.uint8
    tiled = up.upscale_array(image, tile=16, overlap=16)
    # 16 pixels of overlap cover these tiny networks' receptive fields (SwinIR's one block
    # attends within 4x4 windows, which stay aligned as tiles start on multiples of 16)
    assert (tiled == whole).all()
    assert (tiled[..., 3] == whole[..., 3]).all()  # alpha: bicubic, not the network
    deep = up.upscale_array(image[..., :3].astype(np.uint16) * 257)
    assert deep.dtype == np.uint16 and deep.shape == (20 * scale, 24 * scale, 3)
    grey = up.upscale_array(image[..., 0])
    assert grey.shape == (20 * scale, 24 * scale, 1)


def test_cli_upscales_with_weights(weights, rgba, tmp_path):
    src, _ = rgba
    for name in ("esrgan-wrapped", "swinir-st"):
        path, scale, _ = weights[name]
        out = tmp_path / name
        res = run_cli("upscale", "--weights", path, src, "-o", out, "--tile", 16, "--no-progress")
        assert res.returncode == 0, res.stderr
        assert f"upscaled 1 image(s) x{scale}" in res.stdout and res.stderr == ""
        assert read_image(out / "in.png").shape == (20 * scale, 24 * scale, 4)


def scale_one(root):
    from spandrel.architectures.ESRGAN import ESRGAN
    path = root / "restore.pth"
    torch.save(ESRGAN(num_filters=8, num_blocks=1, scale=1).state_dict(), path)
    return path


def test_refusals(weights, rgba, tmp_path):
    src, _ = rgba
    unknown = tmp_path / "unknown.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4)}, str(unknown))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(weights["esrgan"][0].read_bytes()[:300])
    corrupt_st = tmp_path / "corrupt.safetensors"
    corrupt_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    wrong_suffix = tmp_path / "model.bin"
    wrong_suffix.write_bytes(weights["esrgan"][0].read_bytes())
    not_a_state = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_a_state)
    cases = [
        (unknown, f"spandrel does not recognise the weights in {unknown}"),
        (scale_one(tmp_path), "is not a super-resolution model (scale 1)"),
        (tmp_path / "missing.pth", "does not exist"),
        (corrupt, f"cannot load weights {corrupt}"),
        (corrupt_st, f"cannot load weights {corrupt_st}"),
        (wrong_suffix, "unsupported type .bin"),
        (not_a_state, "holds no named tensors"),
    ]
    for path, message in cases:
        with pytest.raises(UserError) as err:
            load_weights(path, "cpu")
        assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    # the CLI: exit 1, the same line, no traceback, nothing written
    for path, message in cases[:2] + cases[3:4]:
        res = run_cli("upscale", "--weights", path, src, "-o", tmp_path / "out", "--no-progress")
        assert res.returncode == 1 and message in res.stderr, res.stderr
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


def test_model_and_weights_together_is_a_usage_error(weights, rgba, tmp_path):
    src, _ = rgba
    path = weights["compact"][0]
    for args in (("--weights", path, "isrnet-x2", src), ("--weights", path, weights["esrgan"][0], src)):
        res = run_cli("upscale", *args, "-o", tmp_path / "out", "--no-progress")
        assert res.returncode == 1 and "give a model or --weights, not both" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    res = run_cli("upscale", "--weights", path, "-o", tmp_path / "out")
    assert res.returncode == 1 and "needs at least one input" in res.stderr
    res = run_cli("upscale", src, "-o", tmp_path / "out")  # no --weights: the first positional is the model
    assert res.returncode == 1 and "needs a model" in res.stderr
