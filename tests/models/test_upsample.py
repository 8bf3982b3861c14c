"""model.upsample of the translation generators: every kind builds and runs, transposed stays the
default (the shipped model folders have no such key), pixel shuffle starts ICNR, ONNX exports."""

import json

import pytest
import torch
from torch import nn

from genforge.checkpoint_files import PRETRAINED_DIR, read_source
from genforge.deploy.pretrained import build_export_module
from genforge.models.resnet_gen import ResNetGenConfig, ResNetGenerator
from genforge.models.spade import SPADEConfig, SPADEModel, one_hot_labels
from genforge.models.unet import UNetConfig, UNetGenerator
from genforge.nn.upsample import PixelShuffleUpsample, ResizeConv
from tests.models.test_translation_models import export_and_compare

KINDS = ["transposed", "resize_conv", "resize_conv_bilinear", "pixel_shuffle"]


def build(net: str, upsample: str):
    torch.manual_seed(0)
    if net == "unet":
        cfg = UNetConfig(image_size=16, width=4, max_width=16, upsample=upsample)
        return UNetGenerator(cfg), torch.randn(2, 3, 32, 16)
    if net == "resnet":
        return ResNetGenerator(ResNetGenConfig(width=4, n_blocks=1, upsample=upsample)), torch.randn(2, 3, 16, 24)
    labels = one_hot_labels(torch.randint(0, 3, (2, 16, 8), generator=torch.Generator().manual_seed(0)), 3)
    return SPADEModel(SPADEConfig(label_nc=3, width=4, num_up=2, spade_hidden=8, upsample=upsample)), labels


@pytest.mark.parametrize("net", ["unet", "resnet", "spade"])
@pytest.mark.parametrize("upsample", KINDS)
def test_every_kind_builds_and_keeps_the_shape(net, upsample):
    model, x = build(net, upsample)
    y = model(x)
    assert y.shape == (x.shape[0], 3, *x.shape[-2:]) and torch.isfinite(y).all() and y.abs().max() <= 1
    layers = {type(m) for m in model.modules()}
    assert (nn.ConvTranspose2d in layers) == (upsample == "transposed")
    assert (PixelShuffleUpsample in layers) == (upsample == "pixel_shuffle")
    assert (ResizeConv in layers) == upsample.startswith("resize_conv")


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_spade_resizes_have_no_weights(upsample):
    model, x = build("spade", upsample)
    plain, _ = build("spade", "nearest")
    assert model.state_dict().keys() == plain.state_dict().keys() and model(x).shape == (2, 3, 16, 8)


def test_defaults_are_the_papers_and_keep_the_old_weight_names():
    assert UNetConfig().upsample == ResNetGenConfig().upsample == "transposed"
    assert SPADEConfig().upsample == "nearest"
    unet = UNetGenerator(UNetConfig(image_size=16, width=4))
    assert unet.state_dict()["up.0.1.weight"].shape == (32, 16, 4, 4)  # ConvTranspose2d(4, 2, 1), as shipped
    assert unet.state_dict()["to_image.1.weight"].shape == (8, 3, 4, 4)
    resnet = ResNetGenerator(ResNetGenConfig(width=4, n_blocks=1))
    assert resnet.state_dict()["up.0.0.weight"].shape == (16, 8, 3, 3)


@pytest.mark.parametrize("name", ["pix2pix-edges2photos", "cyclegan-photo2poster", "spade-labels2photos"])
def test_shipped_models_load_as_the_default_and_explicitly(name):
    if not (PRETRAINED_DIR / name / "config.json").is_file():
        pytest.skip(f"{name} is not shipped")
    source = read_source(name)
    family_default = "nearest" if source.config["model"]["name"] == "spade" else "transposed"
    saved = source.config["model"].get("upsample", family_default)
    as_saved = build_export_module(source)  # strict load_state_dict: every weight fits
    if saved != family_default:  # the re-shipped generators: checkerboard-free, and nothing else to compare
        assert saved in ("resize_conv", "resize_conv_bilinear", "pixel_shuffle")
        return
    # saved with the family's default: a config without the key (folders from before it existed) loads the same
    without = json.loads(json.dumps(source.config))
    without["model"].pop("upsample", None)
    default, same = build_export_module(type(source)(name, without, source.state)), as_saved
    x = torch.rand(1, 8 if "spade" in name else (1 if "pix2pix" in name else 3), 32, 32)
    if "spade" in name:
        x = one_hot_labels(torch.randint(0, 8, (1, 32, 32), generator=torch.Generator().manual_seed(0)), 8)
    with torch.no_grad():
        torch.testing.assert_close(default(x), same(x), rtol=0, atol=0)


def test_pixel_shuffle_starts_as_icnr():
    """Every sub-pixel plane of an output channel has the same kernel: no checkerboard at step 0."""
    model, x = build("unet", "pixel_shuffle")
    for up in (m for m in model.modules() if isinstance(m, PixelShuffleUpsample)):
        conv = up[0]
        w = conv.weight.detach().view(conv.out_channels // 4, 4, *conv.weight.shape[1:])
        assert torch.equal(w, w[:, :1].expand_as(w)) and float(w.std()) < 0.05  # N(0, 0.02), the pix2pix init
    # so the output of the last layer alone is nearest-upsampled: each 2x2 block is constant
    out = model.to_image[1](torch.randn(1, 8, 4, 4))
    assert torch.allclose(out[..., ::2, ::2], out[..., 1::2, 1::2], atol=1e-6)


@pytest.mark.parametrize("net, upsample", [("unet", "resize_conv_bilinear"), ("resnet", "pixel_shuffle"),
                                           ("spade", "bilinear")])
def test_onnx_export(net, upsample, tmp_path):
    model, x = build(net, upsample)
    other = x[:1, :, :16, :16]  # another size than the traced one
    if net == "spade":
        other = one_hot_labels(torch.randint(0, 3, (1, 8, 12), generator=torch.Generator().manual_seed(1)), 3)
    export_and_compare(model, (x,), (other,), tmp_path / f"{net}.onnx")
