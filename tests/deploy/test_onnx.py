"""ONNX export (verified with ONNX Runtime) and the runtime path of the inference wrappers."""

import numpy as np
import onnx
import pytest
import torch

from genforge.data.io import read_image, write_image
from genforge.deploy.export import OnnxRunner, export_onnx
from genforge.deploy.generator import Generation
from genforge.deploy.pretrained import build_export_module, read_source
from genforge.deploy.upscaler import Upscaler
from genforge.errors import UserError
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def folders(tiny_models):
    """Model folders with random weights: what is tested is the export, not a training."""
    return {"isrnet": tiny_models["tiny-sr-x2"], "lapsrn": tiny_models["tiny-lapsrn-x3"],
            "cgan": tiny_models["tiny-cgan"]}


@pytest.fixture(scope="module")
def exported(folders, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    return {name: (export_onnx(str(folder), root / f"{name}.onnx"), root / f"{name}.onnx")
            for name, folder in folders.items()}


@pytest.mark.parametrize("name", ["isrnet", "lapsrn", "cgan"])
def test_export_verifies_and_stores_metadata(exported, folders, name):
    result, path = exported[name]
    assert all(v <= 1e-4 for v in result["max_abs_diff"].values()), result
    assert len(result["max_abs_diff"]) >= 2
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["genforge_format"] == "1" and '"model"' in meta["config"]
    module = build_export_module(read_source(str(folders[name])))
    runner = OnnxRunner(path)
    if name == "cgan":
        assert meta["task"] == "generation" and meta["latent_dim"] == "8" and meta["num_classes"] == "10"
        assert [i.name for i in runner.session.get_inputs()] == ["z", "labels"]
        for n in (1, 5):  # dynamic batch
            z, labels = torch.randn(n, 8), torch.arange(n) % 10
            with torch.no_grad():
                assert (runner(z, labels) - module(z, labels)).abs().max() <= 1e-4
    else:
        assert meta["task"] == "super-resolution" and int(meta["scale"]) == module.scale
        assert int(meta["size_multiple"]) == module.size_multiple
        m = module.size_multiple
        for h, w in ((8 * m, 6 * m), (5 * m, 11 * m)):  # dynamic height and width
            x = torch.rand(1, 3, h, w)
            with torch.no_grad():
                expected = module(x)
            y = runner(x)
            assert y.shape == expected.shape and (y - expected).abs().max() <= 1e-4


def test_export_refuses_a_non_onnx_name(folders, tmp_path):
    with pytest.raises(UserError, match=".onnx"):
        export_onnx(str(folders["isrnet"]), tmp_path / "x.bin")


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:27, 0:37]
    img = np.stack([xx * 6, yy * 8, (xx + yy) * 3], axis=2) + rng.integers(0, 20, (27, 37, 3))
    path = tmp_path_factory.mktemp("img") / "pic.png"
    write_image(path, np.clip(img, 0, 255).astype(np.uint8))
    return path


@pytest.mark.parametrize("tile", [0, 16])
def test_cli_upscale_onnx_matches_pytorch(folders, exported, image_file, tmp_path, tile):
    outs = {}
    for kind, model in (("torch", folders["isrnet"]), ("onnx", exported["isrnet"][1])):
        res = run_cli("upscale", model, image_file, "-o", tmp_path / kind, "--tile", tile, "--no-progress")
        assert res.returncode == 0, res.stderr
        outs[kind] = read_image(tmp_path / kind / "pic.png").astype(int)
    assert outs["onnx"].shape == (54, 74, 3)
    assert np.abs(outs["onnx"] - outs["torch"]).max() <= 1


def test_onnx_upscaler_alpha_and_16_bit(folders, exported):
    torch_up, onnx_up = Upscaler(str(folders["lapsrn"]), device="cpu"), Upscaler(str(exported["lapsrn"][1]))
    assert (onnx_up.scale, onnx_up.channels, onnx_up.multiple) == (3, 3, 1)
    assert onnx_up.default_overlap == torch_up.default_overlap
    rng = np.random.default_rng(1)
    for image in (rng.integers(0, 256, (13, 17, 4), dtype=np.uint8),
                  rng.integers(0, 65536, (13, 17, 3), dtype=np.uint16)):
        a = torch_up.upscale_array(image, tile=16, overlap=4).astype(int)
        b = onnx_up.upscale_array(image, tile=16, overlap=4).astype(int)
        assert a.shape == b.shape == (39, 51, image.shape[2]) and a.dtype == b.dtype
        assert np.abs(a - b).max() <= (1 if image.dtype == np.uint8 else 257)


def test_onnx_generation_matches_pytorch(folders, exported):
    a = Generation(str(folders["cgan"]), device="cpu").generate(6, label=3, seed=1)
    b = Generation(str(exported["cgan"][1])).generate(6, label=3, seed=1)
    assert (a - b).abs().max() <= 1e-4
    with pytest.raises(UserError, match="out of range"):
        Generation(str(exported["cgan"][1])).generate(2, label=10)
    with pytest.raises(UserError, match="not a generator"):
        Generation(str(exported["isrnet"][1]))


def test_cli_export_and_sample_onnx(folders, tmp_path):
    res = run_cli("export", folders["cgan"], "--format", "onnx", "-o", tmp_path / "g.onnx")
    assert res.returncode == 0, res.stderr
    assert "max abs difference" in res.stdout and (tmp_path / "g.onnx").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    res = run_cli("sample", tmp_path / "g.onnx", "--label", 3, "-n", 4, "-o", tmp_path / "threes.png")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "threes.png").is_file()


def test_bad_onnx_files_give_one_line(exported, image_file, tmp_path):
    garbage = tmp_path / "broken.onnx"
    garbage.write_bytes(exported["isrnet"][1].read_bytes()[:200])
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(exported["isrnet"][1]))
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    for path, words in ((garbage, "cannot read ONNX model"), (foreign, "not one exported by genforge")):
        res = run_cli("upscale", path, image_file, "-o", tmp_path / "out", "--no-progress")
        assert res.returncode == 1
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], res.stderr
    res = run_cli("sample", garbage, "-o", tmp_path / "g.png")
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
