import json

import numpy as np
import pytest
import torch
from PIL import Image

from genforge.data.io import read_image, write_image
from genforge.deploy.pretrained import ModelSource
from genforge.deploy.upscaler import Upscaler
from genforge.engine import checkpoint
from genforge.models.isrnet import ISRNet, ISRNetConfig
from genforge.models.lapsrn import LapSRN, LapSRNConfig
from genforge.train import train
from tests.conftest import (
    ROOT,
    assert_same_state,
    randomise_,
    run_cli,
    sr_raw,
    straight_and_resumed,
    weights,
    zero_layers,
)

BENCH = ROOT.parent / "shared" / "benchmarks"


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    import yaml
    root = tmp_path_factory.mktemp("sr")
    cfg = root / "s1.yaml"
    cfg.write_text(yaml.safe_dump(sr_raw()))
    return train(str(cfg), run_dir=str(root / "stage1"), progress=False)


def test_stage1_trains_and_validates(stage1):
    rows = [json.loads(x) for x in (stage1 / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r.get("kind") == "val"]
    assert [r["step"] for r in val] == [0, 2, 4] and all(20 < r["psnr"] < 60 for r in val)
    assert [p.name for p in checkpoint.all_checkpoints(stage1)] == ["step_00000002.pt", "step_00000004.pt"]


@pytest.mark.parametrize("finetune", ["decoder", "full"])
def test_adversarial_finetune_freezes_encoder_by_default(stage1, tmp_path, write_config, finetune):
    raw = sr_raw(stage="gan", finetune=finetune, discriminator={"width": 8, "depth": 2})
    raw["init"] = str(stage1)
    out = train(str(write_config(raw)), run_dir=str(tmp_path / "gan"), progress=False)
    before = checkpoint.load(checkpoint.latest(stage1))["task"]["networks"]["g"]
    after = weights(out)["networks"]["g"]
    net = ISRNet(ISRNetConfig(**raw["model"]))
    enc = {n for n, p in net.named_parameters() if any(p is q for q in net.encoder_parameters())}
    dec = {n for n, p in net.named_parameters() if any(p is q for q in net.decoder_parameters())}
    assert enc and dec and not enc & dec
    assert all(not torch.equal(before[n], after[n]) for n in dec)
    enc_same = all(torch.equal(before[n], after[n]) for n in enc)
    assert enc_same == (finetune == "decoder")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    assert all("loss_adv" in r and "loss_d" in r and "loss_fm" in r for r in rows)


def test_init_must_match_the_network(stage1, tmp_path, write_config):
    from genforge.errors import ConfigError
    raw = sr_raw(stage="gan")
    raw["model"]["width"] = 16
    raw["init"] = str(stage1)
    with pytest.raises(ConfigError, match="different network"):
        train(str(write_config(raw)), run_dir=str(tmp_path / "x"), progress=False)
    assert not (tmp_path / "x").exists()


def test_lapsrn_pyramid_charbonnier_and_exact_resume(tmp_path, write_config):
    raw = sr_raw({"name": "lapsrn", "scale": 4, "channels": 3, "width": 8, "depth": 1}, pixel_loss="charbonnier")
    raw["train"].update(steps=5, checkpoint_every=100, device="cpu")  # exactness is asserted: pinned to the CPU
    straight, resumed = straight_and_resumed(str(write_config(raw)), tmp_path, stop_at=2)
    assert_same_state(weights(straight), weights(resumed))


def random_upscaler(scale=2, channels=3, levels=2, name="isrnet") -> Upscaler:
    """A tiny ISRNet, RepSR or LapSRN with random weights, its zero-initialised output layers included."""
    if name == "isrnet":
        net_class, cfg = ISRNet, ISRNetConfig(scale=scale, channels=channels, width=8, levels=levels,
                                              blocks_per_level=1, bottleneck_blocks=1)
    elif name == "repsr":
        from genforge.models.repsr import RepSR, RepSRConfig
        net_class, cfg = RepSR, RepSRConfig(scale=scale, channels=channels, width=8, blocks=2)
    else:
        net_class, cfg = LapSRN, LapSRNConfig(scale=scale, channels=channels, width=8, depth=1)
    torch.manual_seed(0)
    net = net_class(cfg)
    randomise_(*zero_layers(net), std=0.05, bias_std=0.0)  # a trained-like, non-zero residual branch
    source = ModelSource("random", {"model": cfg.model_dump(mode="json"), "task": {"kind": "superres"}},
                         net.state_dict())
    return Upscaler("random", device="cpu", source=source)


@pytest.mark.parametrize("name", ["isrnet", "lapsrn", "repsr"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiled_equals_untiled(name, scale):
    """With the network's receptive radius as the overlap (given, or the Upscaler's default) every kept
    output pixel sees the same inputs as untiled. Only float rounding differs: a tile is convolved at
    another width (another summation order) and bicubic x3 rounds its source coordinates at other
    offsets, up to 3.6e-5 here, i.e. at most 3 levels of a 16-bit output and rare 1-level flips at 8 bits."""
    up = random_upscaler(scale, name=name)
    radius = up.module.receptive_radius
    assert up.default_overlap == radius
    image = (np.random.default_rng(0).random((70, 93, 3)) * 255).astype(np.uint8)
    deep = image.astype(np.uint16) * 257  # the same picture with a 16-bit output: float noise shows up
    whole, whole16 = up.upscale_array(image).astype(int), up.upscale_array(deep).astype(int)
    assert whole.shape == (70 * scale, 93 * scale, 3)
    for overlap in (radius, None):
        tiled = up.upscale_array(image, tile=24, overlap=overlap).astype(int)
        assert np.abs(tiled - whole).max() <= 1 and (tiled != whole).mean() < 1e-3
        assert np.abs(up.upscale_array(deep, tile=24, overlap=overlap).astype(int) - whole16).max() <= 3
    # too little overlap shows seams: the test can fail
    short = up.upscale_array(deep, tile=24, overlap=radius // 4).astype(int)
    assert np.abs(short - whole16).max() > 3
    seams = up.upscale_array(image, tile=24, overlap=0).astype(int)
    assert np.abs(seams - whole).max() > 1


def test_alpha_grey_and_16bit_roundtrip():
    up = random_upscaler()
    rng = np.random.default_rng(1)
    rgba = (rng.random((20, 24, 4)) * 255).astype(np.uint8)
    out = up.upscale_array(rgba)
    assert out.shape == (40, 48, 4) and out.dtype == np.uint8
    assert np.array_equal(out[..., :3], up.upscale_array(rgba[..., :3]))
    grey = (rng.random((20, 24, 1)) * 65535).astype(np.uint16)
    out16 = up.upscale_array(grey)
    assert out16.shape == (40, 48, 1) and out16.dtype == np.uint16
    assert len(np.unique(out16 % 257)) > 1  # real 16-bit values, not 8-bit ones scaled


def test_luma_model_on_colour_images():
    """A grey (luma) model given RGB upscales Y with the network and chroma with bicubic: the Y of
    the result is the network's output on the Y of the input, and tiling still matches."""
    from genforge.data.color import luma, rgb_to_ycbcr, ycbcr_to_rgb
    up = random_upscaler(channels=1)
    rng = np.random.default_rng(3)
    rgb = (rng.random((32, 40, 3)) * 255).astype(np.uint8)
    out = up.upscale_array(rgb)
    assert out.shape == (64, 80, 3) and out.dtype == np.uint8
    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-5)
    y_net = up.upscale_array(np.rint(luma(x).permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    y_out = luma(torch.from_numpy(out).permute(2, 0, 1).float())[0].numpy()
    assert np.abs(y_out - y_net[..., 0]).mean() < 1.0  # rounding and the odd clipped pixel only
    assert not np.array_equal(out[..., 0], out[..., 1])  # colour survives
    tiled = up.upscale_array(rgb, tile=16, overlap=up.default_overlap)
    assert np.abs(tiled.astype(int) - out.astype(int)).max() <= 1


@pytest.fixture(scope="module")
def model_folder(stage1, tmp_path_factory):
    from genforge.deploy.pretrained import export_folder
    return export_folder(str(stage1), tmp_path_factory.mktemp("m") / "tiny-x2")


def test_upscale_cli_files_folders_and_bad_files(model_folder, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(2)
    write_image(src / "rgb.jpg", (rng.random((16, 20, 3)) * 255).astype(np.uint8))
    write_image(src / "sub" / "alpha.png", (rng.random((16, 20, 4)) * 255).astype(np.uint8))
    write_image(src / "deep.png", (rng.random((12, 12, 3)) * 65535).astype(np.uint16))
    write_image(src / "grey.png", (rng.random((12, 12)) * 255).astype(np.uint8))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    res = run_cli("upscale", model_folder, src, "-o", tmp_path / "out", "--suffix", "_x2", "--no-progress")
    assert res.returncode == 1, res.stderr
    assert "broken.png" in res.stderr and "upscaled 4 image(s)" in res.stdout and "1 failed" in res.stdout
    assert read_image(tmp_path / "out" / "rgb_x2.jpg").shape == (32, 40, 3)
    assert read_image(tmp_path / "out" / "sub" / "alpha_x2.png").shape == (32, 40, 4)
    deep = read_image(tmp_path / "out" / "deep_x2.png")
    assert deep.dtype == np.uint16 and deep.shape == (24, 24, 3)
    assert read_image(tmp_path / "out" / "grey_x2.png").shape == (24, 24, 1)
    assert not list((tmp_path / "out").rglob("*.tmp")) and not (tmp_path / "out" / "broken_x2.png").exists()
    res = run_cli("upscale", model_folder, src / "rgb.jpg", "-o", tmp_path / "o2", "--ext", "png",
                  "--max-pixels", 100)
    assert res.returncode == 1 and "rgb.jpg" in res.stderr and "Traceback" not in res.stderr


def test_eval_sr_protocol_and_errors(model_folder, tmp_path):
    if not (BENCH / "Set5").is_dir():
        pytest.skip(f"benchmark images not found at {BENCH} (../shared/benchmarks)")
    res = run_cli("eval-sr", "bicubic", "--benchmark", BENCH / "Set5", "--scale", 2, "-o", tmp_path / "r.json")
    assert res.returncode == 0, res.stderr
    assert abs(json.loads((tmp_path / "r.json").read_text())["result"]["psnr"] - 33.66) < 0.05
    res = run_cli("eval-sr", model_folder, "--benchmark", BENCH / "Set5", "--scale", 4)
    assert res.returncode == 1 and "upscales x2, not x4" in res.stderr
    res = run_cli("eval-sr", "bicubic", "--benchmark", tmp_path, "--scale", 2)
    assert res.returncode == 1 and "no HR/ folder" in res.stderr


def test_wrong_task_for_the_model(model_folder, tmp_path):
    res = run_cli("sample", model_folder, "-o", tmp_path / "g.png")
    assert res.returncode == 1 and "not a generator" in res.stderr
    from genforge.deploy.pretrained import PRETRAINED_DIR
    res = run_cli("upscale", PRETRAINED_DIR / "digits-cgan", tmp_path, "-o", tmp_path / "o")
    assert res.returncode == 1 and "not a super-resolution model" in res.stderr


def test_patches_are_a_function_of_the_step_and_augment():
    from genforge.data.patches import SRPatches
    rng = np.random.default_rng(0)
    images = [(rng.random((40, 50, 3)) * 255).astype(np.uint8)]
    plain = SRPatches(images, scale=2, patch_size=16, batch_size=4, seed=1)
    a, b, c = plain.batch(3), plain.batch(3), plain.batch(4)
    assert torch.equal(a["hr"], b["hr"]) and not torch.equal(a["hr"], c["hr"])
    assert a["hr"].shape == (4, 3, 16, 16) and a["lr"].shape == (4, 3, 8, 8)
    lit = SRPatches(images, scale=2, patch_size=16, batch_size=4, seed=1, brightness=0.2, contrast=0.3,
                    noise=0.05)
    d = lit.batch(3)
    assert not torch.equal(d["hr"], a["hr"]) and 0 <= d["lr"].min() and d["lr"].max() <= 1


def test_python_one_liner(model_folder, tmp_path):
    import genforge
    write_image(tmp_path / "in.png", (np.random.default_rng(3).random((10, 14, 3)) * 255).astype(np.uint8))
    m = genforge.load(str(model_folder), device="cpu")
    m.upscale(str(tmp_path / "in.png")).save(tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").size == (28, 20)


def test_paired_folders_train_and_report_bad_pairs(tmp_path, write_config):
    from genforge.data.degrade import bicubic_downscale
    from genforge.errors import UserError
    rng = np.random.default_rng(4)
    for name in ("a", "b"):
        hr = (rng.random((41, 37, 3)) * 255).astype(np.uint8)
        write_image(tmp_path / "HR" / f"{name}.png", hr)
        write_image(tmp_path / "LR" / f"{name}x2.png", bicubic_downscale(hr, 2))
    raw = sr_raw(val_images=0)
    raw["data"] = {"dataset": f"folder:{tmp_path / 'HR'}", "lr_folder": str(tmp_path / "LR")}
    out = train(str(write_config(raw)), run_dir=str(tmp_path / "run"), progress=False)
    assert checkpoint.latest(out) is not None
    from genforge.data.patches import SRPatches, read_sr_pairs
    hrs, lrs = read_sr_pairs(str(tmp_path / "HR"), str(tmp_path / "LR"), 2)
    b = SRPatches(hrs, lr_images=lrs, scale=2, patch_size=16, batch_size=3, seed=0).batch(0)
    assert b["hr"].shape == (3, 3, 16, 16) and b["lr"].shape == (3, 3, 8, 8)
    # a given LR equal to the bicubic of the HR crop: pairs stay aligned through flips and rotations
    again = torch.nn.functional.avg_pool2d(b["hr"], 2)
    assert (again - b["lr"]).abs().mean() < 0.08
    write_image(tmp_path / "LR" / "bx2.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(UserError, match="bx2.png is 5x5 but b.png at x2 needs 18x20"):
        read_sr_pairs(str(tmp_path / "HR"), str(tmp_path / "LR"), 2)
    (tmp_path / "LR" / "bx2.png").unlink()
    with pytest.raises(UserError, match="no LR partner"):
        read_sr_pairs(str(tmp_path / "HR"), str(tmp_path / "LR"), 2)
