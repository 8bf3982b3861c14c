"""Pix2Pix, CycleGAN and SPADE through the real fit(): training, validation, previews, exact resume,
the image pool, the cycle and identity losses, translate/eval/export of the trained runs."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from genforge.config import validate
from genforge.data.io import read_image, write_image
from genforge.deploy.infer import load
from genforge.deploy.translator import Translator
from genforge.errors import ConfigError
from genforge.tasks.cyclegan import CycleGANTask, ImagePool
from genforge.train import train
from tests.conftest import assert_same_state, run_cli, straight_and_resumed, translation_raw, weights


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import yaml
    root = tmp_path_factory.mktemp("translation")
    out = {}
    for kind in ("pix2pix", "cyclegan", "spade"):
        cfg = root / f"{kind}.yaml"
        cfg.write_text(yaml.safe_dump(translation_raw(kind)))
        out[kind] = train(str(cfg), run_dir=str(root / kind), progress=False)
    return out


@pytest.mark.parametrize("kind", ["pix2pix", "cyclegan", "spade"])
def test_trains_validates_and_writes_previews(runs, kind):
    run = runs[kind]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r.get("kind") == "train"]
    assert train_rows and all(np.isfinite(v) for r in train_rows for k, v in r.items() if k.startswith("loss"))
    expected = {"pix2pix": {"loss_d", "loss_adv", "loss_l1"},
                "cyclegan": {"loss_gan", "loss_cycle", "loss_idt", "loss_d"},
                "spade": {"loss_d", "loss_gan", "loss_fm", "loss_kl"}}[kind]
    assert expected <= set(train_rows[0])
    val = [r for r in rows if r.get("kind") == "val"]
    assert [r["step"] for r in val] == [0, 2, 4]
    assert all(0 <= r["l1"] <= 1 and 0 < r["psnr"] < 60 for r in val)
    grid = read_image(run / "samples" / "step_00000004.png")
    assert grid.shape[2] == 3 and grid.shape[1] > grid.shape[0]  # rows of input | output | target


def test_pix2pix_l1_only_has_no_discriminator(tmp_path, write_config):
    raw = translation_raw("pix2pix")
    raw["task"]["gan_loss"] = "none"
    run = train(str(write_config(raw)), run_dir=str(tmp_path / "l1"), progress=False)
    state = weights(run)
    assert set(state["networks"]) == {"g"}
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert "loss_d" not in rows[0] and "loss_l1" in rows[0]


@pytest.mark.parametrize("kind", ["pix2pix", "cyclegan", "spade"])
def test_exact_resume(tmp_path, write_config, kind):
    """Five steps in one go, or three, an interrupt and a resume: bit-identical networks, optimisers,
    schedules and (CycleGAN) image pools."""
    raw = translation_raw(kind)
    # exactness is asserted: pinned to the CPU
    raw["train"].update(steps=5, checkpoint_every=100, eval_every=0, sample_every=100, device="cpu")
    straight, resumed = straight_and_resumed(str(write_config(raw)), tmp_path, stop_at=3)
    a, b = weights(straight), weights(resumed)
    assert_same_state(a, b)
    if kind == "pix2pix":  # the generator and the discriminator both trained
        assert set(a["networks"]) == {"g", "d"}
    if kind == "cyclegan":  # the pools are part of the state
        assert a["pools"]["a"]["images"] is not None and len(a["pools"]["a"]["images"]) == 10


def test_image_pool_fills_then_swaps_half():
    torch.manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: every fake passes through
    assert torch.equal(pool.images, first)
    new = 100 + torch.arange(200.0).view(200, 1, 1, 1)
    out = pool.query(new)
    from_pool = out.flatten() != new.flatten()
    assert 0.35 < from_pool.float().mean() < 0.65  # about half are swapped for older fakes
    assert (out.flatten()[from_pool] < new.flatten()[from_pool]).all()  # always an earlier one
    assert len(pool.images) == 4 and (pool.images >= 100).any()
    assert torch.equal(ImagePool(0).query(new), new)


class Scale(nn.Module):
    def __init__(self, value: float, channels: int = 3):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(value))
        self.in_channels = self.out_channels = channels
        self.size_multiple = 1

    def forward(self, x):
        return self.k * x


def test_cycle_and_identity_losses():
    cfg = validate(translation_raw("cyclegan"))
    task = CycleGANTask(cfg, torch.device("cpu"))
    task.networks["g_ab"], task.networks["g_ba"] = Scale(0.5), Scale(2.0)  # F(G(a)) = a exactly
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    m = task.training_step({"a": a, "b": b}, 0)
    assert float(m["loss_cycle"]) == pytest.approx(0.0, abs=1e-6)
    # identity: |G(b) - b| + |F(a) - a| = 0.5 mean|b| + mean|a|
    assert float(m["loss_idt"]) == pytest.approx(float(0.5 * b.abs().mean() + a.abs().mean()), rel=1e-5)
    task.networks["g_ab"], task.networks["g_ba"] = Scale(1.0), Scale(1.0)
    m = task.training_step({"a": a, "b": b}, 1)
    assert float(m["loss_cycle"]) == pytest.approx(0.0, abs=1e-6) and float(m["loss_idt"]) == pytest.approx(0.0)
    task.networks["g_ab"], task.networks["g_ba"] = Scale(0.5), Scale(1.0)
    m = task.training_step({"a": a, "b": b}, 2)  # F(G(a)) = a/2, G(F(b)) = b/2
    assert float(m["loss_cycle"]) == pytest.approx(float(0.5 * a.abs().mean() + 0.5 * b.abs().mean()), rel=1e-5)


def test_cycle_a_weight_and_input_loss():
    raw = translation_raw("cyclegan")
    raw["task"].update(cycle_a_weight=0.0, input_weight=2.0, identity_weight=0.0)
    task = CycleGANTask(validate(raw), torch.device("cpu"))
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    # G halves, F doubles: the input term is |a/2 - a| + |2b - b|; the cycles are both exact
    task.networks["g_ab"], task.networks["g_ba"] = Scale(0.5), Scale(2.0)
    m = task.training_step({"a": a, "b": b}, 0)
    assert float(m["loss_input"]) == pytest.approx(float(0.5 * a.abs().mean() + b.abs().mean()), rel=1e-5)
    # G(a) = a and F(b) = b/2: no input term from G; A -> B -> A is off, so only B -> A -> B's cycle counts
    task.networks["g_ab"], task.networks["g_ba"] = Scale(1.0), Scale(0.5)
    m = task.training_step({"a": a, "b": b}, 1)
    gan = float(m["loss_g"]) - 10.0 * 0.5 * float(b.abs().mean()) - 2.0 * float(m["loss_input"])
    assert float(m["loss_input"]) == pytest.approx(float(0.5 * b.abs().mean()), rel=1e-5)
    assert gan == pytest.approx(float(m["loss_gan"]), rel=1e-4)


def test_input_weight_needs_equal_channels():
    raw = translation_raw("cyclegan")
    raw["data"]["dataset"] = "gray2color"
    raw["model"].update(in_channels=1, out_channels=3)
    raw["task"]["input_weight"] = 1.0
    with pytest.raises(ConfigError, match="task.input_weight: needs equal channels"):
        CycleGANTask(validate(raw), torch.device("cpu"))


def test_identity_off_for_different_channels():
    raw = translation_raw("cyclegan")
    raw["data"]["dataset"] = "gray2color"
    raw["model"].update(in_channels=1, out_channels=3)
    task = CycleGANTask(validate(raw), torch.device("cpu"))
    assert not task.identity
    m = task.training_step({"a": torch.rand(2, 1, 16, 16) * 2 - 1, "b": torch.rand(2, 3, 16, 16) * 2 - 1}, 0)
    assert "loss_idt" not in m and np.isfinite(float(m["loss_g"]))


@pytest.mark.parametrize("change, message", [
    ({"model": {"in_channels": 3}}, "model.in_channels: is 3 but dataset 'edges2photos' has 1-channel A images"),
    ({"task": {"patch_size": 24}}, "task.patch_size: 24 is not a multiple"),
    ({"data": {"dataset": "photo2poster"}}, "is unpaired data; task.kind pix2pix needs paired data"),
])
def test_config_mismatches_are_one_line_errors(tmp_path, write_config, change, message):
    raw = translation_raw("pix2pix")
    for section, values in change.items():
        raw[section].update(values)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(str(write_config(raw)), run_dir=str(tmp_path / "x"), progress=False)
    assert not (tmp_path / "x").exists()


def test_translator_pads_and_crops_any_size(runs):
    tr = load(str(runs["pix2pix"]))
    assert isinstance(tr, Translator) and tr.multiple == 16
    edges = (np.random.default_rng(0).random((37, 23)) > 0.8).astype(np.uint8) * 255
    out = tr.translate_array(edges)
    assert out.shape == (37, 23, 3) and out.dtype == np.uint8
    rgba = np.zeros((20, 18, 4), np.uint8)
    rgba[..., 3] = 77
    out = tr.translate_array(rgba)  # colour in, grey network: luma; alpha passes through
    assert out.shape == (20, 18, 4) and (out[..., 3] == 77).all()
    assert tr.translate_array((edges.astype(np.uint16) * 257)).shape == (37, 23, 3)


def test_cyclegan_both_directions(runs):
    tr = Translator(str(runs["cyclegan"]), device="cpu")
    img = (np.random.default_rng(1).random((20, 28, 3)) * 255).astype(np.uint8)
    ab, ba = tr.translate_array(img), tr.translate_array(img, direction="b2a")
    assert ab.shape == ba.shape == img.shape and not np.array_equal(ab, ba)


def test_spade_label_maps_styles_and_errors(runs):
    from genforge.errors import UserError
    tr = Translator(str(runs["spade"]), device="cpu")
    ids = np.zeros((20, 24), np.uint8)
    ids[:, 12:] = 3
    ids[0, 0] = 255
    plain = tr.translate_array(ids)
    assert plain.shape == (20, 24, 3)
    assert np.array_equal(plain, tr.translate_array(ids))  # deterministic without a style
    photo = (np.random.default_rng(2).random((40, 40, 3)) * 255).astype(np.uint8)
    assert not np.array_equal(plain, tr.translate_array(ids, style=photo))
    assert not np.array_equal(tr.translate_array(ids, seed=1), tr.translate_array(ids, seed=2))
    bad = ids.copy()
    bad[5, 5] = 9
    with pytest.raises(UserError, match="class id 9 is out of range"):
        tr.translate_array(bad)


def test_translate_cli_and_eval(runs, tmp_path):
    from PIL import Image
    maps = tmp_path / "maps"
    maps.mkdir()
    ids = np.zeros((24, 20), np.uint8)
    ids[12:] = 5
    Image.fromarray(ids, mode="L").save(maps / "a.png")
    pal = Image.fromarray(ids, mode="P")
    pal.putpalette([0, 0, 0] * 5 + [200, 10, 10] + [0, 0, 0] * 250)
    pal.save(maps / "b.png")  # palette indices are the ids, not the colours
    write_image(maps / "rgb.png", np.zeros((8, 8, 3), np.uint8))
    r = run_cli("translate", runs["spade"], maps, "-o", tmp_path / "out", "--no-progress")
    assert r.returncode == 1 and "rgb.png" in r.stderr and "not colours" in r.stderr  # reported, others done
    a, b = read_image(tmp_path / "out" / "a.png"), read_image(tmp_path / "out" / "b.png")
    assert a.shape == (24, 20, 3) and np.array_equal(a, b)

    r = run_cli("translate", runs["pix2pix"], maps / "a.png", "-o", tmp_path / "o2", "--direction", "b2a")
    assert r.returncode != 0 and "one way only" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("translate", runs["pix2pix"], maps / "a.png", "-o", tmp_path / "o3", "--style", maps / "a.png")
    assert r.returncode != 0 and "no style encoder" in r.stderr

    r = run_cli("eval", runs["pix2pix"], "--metrics", "l1,psnr,ssim", "-o", tmp_path / "e.json")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["images"] == 3 and 0 < result["l1"] < 1 and 0 < result["psnr"] < 60 and -1 < result["ssim"] < 1
    assert set(result["per_image"]) == {"chelsea", "coins", "flower"}
    r = run_cli("eval", runs["cyclegan"], "--metrics", "fid")
    assert r.returncode != 0 and "--features" in r.stderr


@pytest.mark.parametrize("kind", ["pix2pix", "cyclegan", "spade"])
def test_model_folder_and_onnx_round_trip(runs, tmp_path, kind):
    from genforge.deploy.export import export_onnx
    from genforge.deploy.pretrained import export_folder
    folder = export_folder(str(runs[kind]), tmp_path / "m")
    result = export_onnx(str(folder), tmp_path / "m.onnx")
    assert max(result["max_abs_diff"].values()) <= 1e-4
    torch_tr, onnx_tr = Translator(str(folder), device="cpu"), Translator(str(tmp_path / "m.onnx"))
    if kind == "spade":
        x = np.random.default_rng(3).integers(0, 8, (20, 28)).astype(np.uint8)
    else:
        x = (np.random.default_rng(3).random((20, 28, 1 if kind == "pix2pix" else 3)) * 255).astype(np.uint8)
    a, b = torch_tr.translate_array(x), onnx_tr.translate_array(x)
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_eval_fid_with_a_supplied_feature_network(runs, tmp_path):
    import warnings
    with warnings.catch_warnings():  # torch.jit is deprecated, but TorchScript files are what users have
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.script(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                             nn.Flatten()))
    net.save(str(tmp_path / "features.pt"))
    r = run_cli("eval", runs["pix2pix"], "--metrics", "l1,fid,kid", "--features",
                f"torchscript:{tmp_path / 'features.pt'}", "-o", tmp_path / "e.json")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["tiles"] > 30 and result["fid"] > 0 and np.isfinite(result["kid"]) and "l1" in result


def test_half_precision_model_folder(runs, tmp_path):
    from safetensors.torch import load_file

    from genforge.deploy.pretrained import export_folder
    full = export_folder(str(runs["pix2pix"]), tmp_path / "f")
    half = export_folder(str(runs["pix2pix"]), tmp_path / "h", half=True)
    dtypes = {v.dtype for v in load_file(str(half / "model.safetensors")).values()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    x = (np.random.default_rng(4).random((32, 48, 1)) * 255).astype(np.uint8)
    a = Translator(str(full), device="cpu").translate_array(x)
    b = Translator(str(half), device="cpu").translate_array(x)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_comparison_sheet_rows_and_columns(runs, tmp_path):
    """The before/after sheet: one row per holdout image (up to `rows`), input | each model | truth, each
    tile a centre crop of one side, white gaps between."""
    from PIL import Image

    from genforge.demo import comparison_row, translation_sheet
    tr = Translator(str(runs["pix2pix"]), device="cpu")
    out = translation_sheet([tr, tr], tmp_path / "sheet.png", size=40, rows=2)
    width, height = Image.open(out).size
    assert (width, height) == (4 * 40 + 3 * 4, 2 * (40 + 4))
    row = comparison_row([np.zeros((50, 60, 1), np.uint8), np.full((30, 70, 3), 9, np.uint8)], 64, gap=2)
    assert row.shape == (30, 30 + 2 + 30, 3) and (row[:, 30:32] == 255).all() and (row[:, 32:] == 9).all()
