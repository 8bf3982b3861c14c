"""Image-translation networks (Pix2Pix U-Net, PatchGAN, CycleGAN ResNet, SPADE) with tiny configs."""

import io
import warnings

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from genforge.models.patchgan import MultiScaleDiscriminator, PatchDiscriminator, PatchGANConfig
from genforge.models.resnet_gen import ResNetGenConfig, ResNetGenerator
from genforge.models.spade import SPADEConfig, SPADEModel, SPADEResBlock, StyleEncoder, one_hot_labels
from genforge.models.unet import UNetConfig, UNetGenerator
from genforge.nn.init import init_normal_
from genforge.nn.norms import SPADE, fold_spectral_
from genforge.nn.tone_curve import ToneCurve


def tiny_unet(**kw) -> UNetConfig:
    return UNetConfig(**{"image_size": 32, "width": 4, "max_width": 16, **kw})


def tiny_resnet(**kw) -> ResNetGenConfig:
    return ResNetGenConfig(**{"width": 4, "n_blocks": 2, "n_down": 2, **kw})


def tiny_spade(**kw) -> SPADEConfig:
    return SPADEConfig(**{"label_nc": 3, "width": 4, "num_up": 2, "spade_hidden": 8, "z_dim": 5,
                          "encoder_width": 4, **kw})


def random_labels(n: int, h: int, w: int, label_nc: int, seed: int = 0) -> torch.Tensor:
    ids = torch.randint(0, label_nc, (n, h, w), generator=torch.Generator().manual_seed(seed))
    return one_hot_labels(ids, label_nc)


def check_image(y: torch.Tensor, shape: tuple) -> None:
    assert y.shape == shape
    assert torch.isfinite(y).all() and y.abs().max() <= 1.0


# generators: shapes, size checks ----------------------------------------------------------------

@pytest.mark.parametrize("h, w", [(32, 32), (64, 32), (96, 64)])
def test_unet_shapes(h, w):
    torch.manual_seed(0)
    net = UNetGenerator(tiny_unet(in_channels=2, out_channels=1))
    assert (net.size_multiple, net.in_channels, net.out_channels) == (32, 2, 1)
    check_image(net(torch.rand(2, 2, h, w) * 2 - 1), (2, 1, h, w))


def test_unet_is_pix2pix_at_256():
    """unet_256 of pix2pix: 8 levels, 64..512 channels, 54.414 M parameters (biases differ slightly)."""
    cfg = UNetConfig()
    assert cfg.level_widths() == [64, 128, 256, 512, 512, 512, 512, 512]
    assert abs(sum(p.numel() for p in UNetGenerator(cfg).parameters()) - 54.414e6) < 1e3


def test_unet_rejects_sizes_and_bad_config():
    net = UNetGenerator(tiny_unet())
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.zeros(1, 3, 48, 32))
    with pytest.raises(ValidationError, match="power of two"):
        UNetConfig(image_size=48)
    with pytest.raises(ValidationError, match="Input should be .relu."):
        UNetConfig(activation="swishy")
    with pytest.raises(ValidationError):
        UNetConfig(depth=3)  # extra fields are refused


def test_unet_dropout_only_in_train_mode():
    torch.manual_seed(0)
    net = UNetGenerator(tiny_unet(dropout=0.5, norm="instance"))
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 3
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert not torch.equal(net.train()(x), net(x))
        net.eval()
        assert torch.equal(net(x), net(x))
    assert not any(isinstance(m, nn.Dropout) for m in UNetGenerator(tiny_unet(dropout=0.0)).modules())


@pytest.mark.parametrize("h, w", [(16, 16), (24, 40), (32, 12)])
def test_resnet_shapes(h, w):
    torch.manual_seed(0)
    net = ResNetGenerator(tiny_resnet(in_channels=1, dropout=0.5))
    assert (net.size_multiple, net.in_channels, net.out_channels) == (4, 1, 3)
    check_image(net(torch.rand(2, 1, h, w) * 2 - 1), (2, 3, h, w))


def test_resnet_rejects_sizes_and_is_cyclegan_sized():
    with pytest.raises(ValueError, match="multiples of 4"):
        ResNetGenerator(tiny_resnet())(torch.zeros(1, 3, 18, 16))
    # CycleGAN's resnet_9blocks has 11.378 M parameters; affine instance norm instead of conv
    # biases adds one per normalised channel
    assert abs(sum(p.numel() for p in ResNetGenerator(ResNetGenConfig()).parameters()) - 11.378e6) < 6e3


def test_resnet_input_skip_starts_as_the_identity_and_learns_a_correction():
    torch.manual_seed(0)
    net = ResNetGenerator(tiny_resnet(input_skip=True))
    x = torch.rand(2, 3, 16, 20) * 1.8 - 0.9
    assert torch.allclose(net(x), x, atol=1e-5)  # zero-initialised output conv: tanh(atanh(x)) = x
    ends = torch.tensor([-1.0, 1.0]).repeat(1, 3, 16, 8)
    assert torch.isfinite(net(ends)).all()  # the clamp keeps atanh finite at -1 and 1
    target = -x  # one the identity start is far from: the correction path must carry it
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = (net(x) - target).abs().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        ResNetGenerator(tiny_resnet(in_channels=1, input_skip=True))


def test_tone_curve_starts_as_the_identity_and_learns_a_staircase():
    curve = ToneCurve(3, 33)
    x = torch.linspace(-1, 1, 3 * 41 * 5).view(1, 3, 41, 5)
    assert (curve(x) - x).abs().max() < 5e-3  # the identity (ends clipped to +-0.995)
    # posterising, the map convolutions do not learn: 4 levels per channel, a step every 0.5
    target = ((x + 1) * 2).floor().clamp(max=3) * 0.5 - 0.75
    opt = torch.optim.Adam(curve.parameters(), lr=5e-3)
    for _ in range(300):
        loss = (curve(x) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.04  # the identity's is 0.125; the segments spanning a step stay ramps
    with pytest.raises(ValueError, match="3 channels got 1"):
        curve(x[:, :1])
    with pytest.raises(ValueError, match="at least 2 knots"):
        ToneCurve(3, 1)


def test_resnet_tone_curve_is_last_and_per_channel():
    torch.manual_seed(0)
    net = ResNetGenerator(tiny_resnet(input_skip=True, tone_curve=4))
    x = torch.rand(2, 3, 16, 20) * 1.8 - 0.9
    assert torch.allclose(net(x), x, atol=5e-3)  # identity start: skip and curve both
    with torch.no_grad():
        net.tone_curve.raw[1].fill_(0.0)  # channel 1's curve flat at 0
    out = net(x)
    assert torch.equal(out[:, 1], torch.zeros_like(out[:, 1]))
    assert torch.allclose(out[:, [0, 2]], x[:, [0, 2]], atol=5e-3)


@pytest.mark.parametrize("h, w", [(8, 8), (16, 24), (12, 20)])
def test_spade_shapes(h, w):
    torch.manual_seed(0)
    model = SPADEModel(tiny_spade())
    assert (model.size_multiple, model.label_nc, model.out_channels, model.use_style) == (4, 3, 3, False)
    assert model.encoder is None
    check_image(model(random_labels(2, h, w, 3)), (2, 3, h, w))


def test_spade_rejects_sizes():
    model = SPADEModel(tiny_spade())
    with pytest.raises(ValueError, match="multiples of 4"):
        model(random_labels(1, 10, 8, 3))
    with pytest.raises(ValueError, match="no style encoder"):
        model.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="takes no z"):
        model(random_labels(1, 8, 8, 3), torch.zeros(1, 5))
    with pytest.raises(ValueError, match="larger than 4x4"):  # a 1x1 bottom has no instance statistics
        model(random_labels(1, 4, 4, 3))
    assert SPADEModel(tiny_spade(param_free="batch"))(random_labels(2, 4, 4, 3)).shape == (2, 3, 4, 4)


def test_weights_start_as_pix2pix():
    torch.manual_seed(0)
    conv = UNetGenerator(tiny_unet(width=16, max_width=64)).down[2][1]
    assert abs(float(conv.weight.detach().std()) - 0.02) < 0.002 and conv.bias is None
    # under spectral norm the raw weight is initialised and sigma re-estimated for it (a stale
    # estimate, from the default init's larger weight, would be off by a factor of ~3)
    torch.manual_seed(0)
    sn = init_normal_(nn.utils.parametrizations.spectral_norm(nn.Conv2d(8, 8, 3)))
    with torch.no_grad():
        sigma = torch.linalg.matrix_norm(sn.parametrizations.weight.original.flatten(1), ord=2)
        torch.testing.assert_close(sn.weight, sn.parametrizations.weight.original / sigma, rtol=2e-2, atol=0)


# PatchGAN ---------------------------------------------------------------------------------------

def test_patchgan_receptive_field_is_70():
    torch.manual_seed(0)
    disc = PatchDiscriminator(2, PatchGANConfig(width=4, n_layers=3, norm="none")).double()
    x = torch.rand(1, 2, 128, 128, dtype=torch.float64, requires_grad=True)
    logits = disc(x)
    assert logits.shape == (1, 1, 14, 14)  # 128 -> 64 -> 32 -> 16 -> 15 -> 14
    logits[0, 0, 7, 7].backward()
    rows, cols = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
    assert int(rows.max() - rows.min()) + 1 == 70 and int(cols.max() - cols.min()) + 1 == 70
    assert rows.min() > 0 and rows.max() < 127  # the field did not reach the border


@pytest.mark.parametrize("norm", ["batch", "instance", "spectral", "none"])
def test_patchgan_features(norm):
    torch.manual_seed(0)
    disc = PatchDiscriminator(3, PatchGANConfig(width=4, n_layers=2, norm=norm))
    logits, features = disc(torch.randn(2, 3, 32, 24), return_features=True)
    assert logits.shape == (2, 1, 6, 4) and torch.isfinite(logits).all()
    assert len(features) == 3 and [f.shape[1] for f in features] == [4, 8, 16]


def test_multiscale_discriminator():
    torch.manual_seed(0)
    disc = MultiScaleDiscriminator(3, PatchGANConfig(width=4, n_layers=2, num_scales=3))
    out = disc(torch.randn(2, 3, 64, 64))
    assert len(out) == 3
    sizes = [logits.shape[-1] for logits, _ in out]
    assert sizes == [14, 6, 2]  # inputs 64, 32, 16
    assert all(len(features) == 3 and logits.shape[:2] == (2, 1) for logits, features in out)


# SPADE ------------------------------------------------------------------------------------------

def test_one_hot_labels():
    ids = torch.tensor([[[0, 2], [255, 1]]])
    one_hot = one_hot_labels(ids, 3)
    assert one_hot.shape == (1, 3, 2, 2) and one_hot.dtype == torch.float32
    assert one_hot[0, :, 1, 0].tolist() == [0, 0, 0]  # don't care
    assert one_hot[0, :, 0, 0].tolist() == [1, 0, 0] and one_hot[0, :, 0, 1].tolist() == [0, 0, 1]
    assert one_hot[0, :, 1, 1].tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="0..2"):
        one_hot_labels(torch.tensor([[[3]]]), 3)


def test_spade_norm_follows_the_label_map():
    torch.manual_seed(0)
    layer = SPADE(4, 2, hidden=8)
    with torch.no_grad():  # default init is deliberately small; make the modulation visible
        for conv in (layer.shared[0], layer.gamma, layer.beta):
            conv.weight.normal_(0, 0.3)
    half = torch.randn(1, 4, 8, 6)
    x = torch.cat([half, half], dim=-1)  # identical halves: any difference comes from the map
    ids = torch.zeros(1, 4, 6, dtype=torch.long)
    ids[..., 3:] = 1  # class 0 left, class 1 right (a coarser map than x: it is resized)
    split = one_hot_labels(ids, 2)
    with torch.no_grad():
        y = layer(x, split)
        assert not torch.allclose(y, layer(x, one_hot_labels(torch.zeros_like(ids), 2)))
    left, right = y[..., 1:5], y[..., 7:11]  # away from the boundary the 3x3 convs straddle
    assert (left.mean(dim=(2, 3)) - right.mean(dim=(2, 3))).abs().max() > 0.05
    with pytest.raises(ValueError, match="instance or batch"):
        SPADE(4, 2, param_free="group")


def test_spade_resblock_shortcut():
    learned, identity = SPADEResBlock(8, 4, 3, hidden=8), SPADEResBlock(4, 4, 3, hidden=8, spectral=False)
    assert learned.conv_s is not None and learned.conv_s.bias is None and identity.conv_s is None
    assert learned.conv_0.out_channels == 4  # min(fin, fout)
    labels = random_labels(2, 8, 8, 3)
    assert learned(torch.randn(2, 8, 4, 4), labels).shape == (2, 4, 4, 4)
    assert identity(torch.randn(2, 4, 4, 4), labels).shape == (2, 4, 4, 4)


def test_spade_style():
    torch.manual_seed(0)
    model = SPADEModel(tiny_spade(use_style=True)).eval()
    assert model.z_dim == 5 and isinstance(model.encoder, StyleEncoder)
    mu, logvar = model.encode(torch.rand(2, 3, 32, 48) * 2 - 1)
    assert mu.shape == logvar.shape == (2, 5)
    with pytest.raises(ValueError, match="at least 32"):
        model.encode(torch.zeros(1, 3, 16, 32))
    labels = random_labels(2, 8, 12, 3)
    with torch.no_grad():
        a, b = model(labels, torch.randn(2, 5)), model(labels, torch.randn(2, 5))
        assert (a - b).abs().max() > 1e-4
        torch.testing.assert_close(model(labels), model(labels, torch.zeros(2, 5)), rtol=0, atol=0)
    check_image(a, (2, 3, 8, 12))


# state dict round trip and ONNX -----------------------------------------------------------------

def build(kind: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny network, an export-size input and an input of another size."""
    if kind == "unet":
        net = UNetGenerator(tiny_unet(image_size=16))
        return net, torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 48, 16) * 2 - 1
    if kind == "resnet":
        return ResNetGenerator(tiny_resnet()), torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 20, 28) * 2 - 1
    if kind == "resnet_skip":
        net = ResNetGenerator(tiny_resnet(input_skip=True))
        nn.init.normal_(net.to_image[0].weight, std=0.05)  # not the identity, so the export is really compared
        return net, torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 20, 28) * 2 - 1
    if kind == "resnet_curve":
        net = ResNetGenerator(tiny_resnet(input_skip=True, tone_curve=8))
        with torch.no_grad():  # a staircase, not the identity, so the curve's export is really compared
            net.tone_curve.raw.copy_(torch.linspace(-0.12, 0.12, 8).round(decimals=1).repeat(3, 1))
        nn.init.normal_(net.to_image[0].weight, std=0.05)
        return net, torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 20, 28) * 2 - 1
    if kind == "spade":
        return SPADEModel(tiny_spade()), random_labels(1, 16, 16, 3), random_labels(2, 12, 24, 3, seed=1)
    if kind == "spade_style":
        return SPADEModel(tiny_spade(use_style=True, param_free="batch")), random_labels(1, 8, 8, 3), None
    return PatchDiscriminator(3, PatchGANConfig(width=4, n_layers=2, norm="spectral")), torch.randn(1, 3, 16, 16), None


@pytest.mark.parametrize("kind", ["unet", "resnet", "resnet_curve", "spade", "spade_style", "patchgan"])
def test_state_dict_round_trip(kind):
    torch.manual_seed(0)
    net, x, _ = build(kind)
    net.train()(x if kind != "unet" else torch.cat([x, -x]))  # move batch-norm statistics and spectral vectors
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    torch.manual_seed(1)
    copy, _, _ = build(kind)
    buf.seek(0)
    copy.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        assert torch.equal(net.eval()(x), copy.eval()(x))


def export_and_compare(net: nn.Module, args: tuple, other: tuple, path) -> None:
    """Export with dynamic batch, height and width; run ONNX Runtime on inputs of another size."""
    ort = pytest.importorskip("onnxruntime")
    net.eval()
    with torch.no_grad():
        before = net(*other)
        fold_spectral_(net)  # the power iteration of spectral norm has no ONNX operator
        torch.testing.assert_close(net(*other), before, rtol=0, atol=1e-6)
    names = ["x", "z"][:len(args)]
    axes = {"x": {0: "batch", 2: "height", 3: "width"}, "z": {0: "batch"},
            "y": {0: "batch", 2: "height", 3: "width"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on the size checks
        torch.onnx.export(net, args, str(path), input_names=names, output_names=["y"], opset_version=17,
                          dynamic_axes={k: axes[k] for k in names + ["y"]}, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {name: a.numpy().astype(np.float32) for name, a in zip(names, other)})[0]
    assert got.shape == tuple(before.shape)
    assert float(np.abs(got - before.numpy()).max()) <= 1e-4


@pytest.mark.parametrize("kind", ["unet", "resnet", "resnet_skip", "resnet_curve", "spade"])
def test_onnx_export_dynamic_size(kind, tmp_path):
    torch.manual_seed(0)
    net, x, other = build(kind)
    export_and_compare(net, (x,), (other,), tmp_path / f"{kind}.onnx")


def test_onnx_export_spade_with_style(tmp_path):
    torch.manual_seed(0)
    net = SPADEModel(tiny_spade(use_style=True))
    export_and_compare(net, (random_labels(1, 8, 4, 3), torch.randn(1, 5)),
                       (random_labels(2, 12, 20, 3, seed=1), torch.randn(2, 5)), tmp_path / "spade_style.onnx")
