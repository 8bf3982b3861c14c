"""Super-resolution networks and their blocks, with tiny configs (CPU, seconds)."""

import io

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from genforge.models.isrnet import ISRNet, ISRNetConfig, measure_receptive_radius
from genforge.models.lapsrn import BilinearUpsample2x, LapSRN, LapSRNConfig
from genforge.models.sr_discriminator import SRDiscriminator, SRDiscriminatorConfig
from genforge.nn import NonLocalBlock, PixelShuffleUpsample, ResidualBlock
from tests.conftest import randomise_

ACTIVATIONS = ["relu", "elu", "leaky_relu", "prelu", "sigmoid", "tanh"]


def tiny_isrnet(**kw) -> ISRNetConfig:
    return ISRNetConfig(**{"width": 4, "max_width": 8, "levels": 2, "blocks_per_level": 1,
                           "bottleneck_blocks": 2, **kw})


def tiny_lapsrn(**kw) -> LapSRNConfig:
    return LapSRNConfig(**{"width": 4, "depth": 2, **kw})


def bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


# blocks ---------------------------------------------------------------------------------------

def test_residual_block_keeps_shape_and_scales_branch():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 7)
    full, damped = ResidualBlock(6), ResidualBlock(6, "relu", res_scale=0.1)
    damped.load_state_dict(full.state_dict())
    assert full(x).shape == x.shape
    torch.testing.assert_close(damped(x) - x, 0.1 * (full(x) - x), rtol=0, atol=1e-6)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in full.modules())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pixel_shuffle_upsample_icnr_starts_without_checkerboard(scale):
    torch.manual_seed(0)
    up = PixelShuffleUpsample(5, scale, activation="relu", out_channels=3)
    y = up(torch.randn(2, 5, 6, 4))
    assert y.shape == (2, 3, 6 * scale, 4 * scale)
    # ICNR: every output pixel equals the others of its scale x scale block (nearest upsampling);
    # for x4 the first stage's 2x2 blocks feed a second 3x3 conv, so only the last stage is checked
    s = 2 if scale == 4 else scale
    blocks = y.unfold(2, s, s).unfold(3, s, s)
    torch.testing.assert_close(blocks, blocks[..., :1, :1].expand_as(blocks))
    with pytest.raises(ValueError, match="scale"):
        PixelShuffleUpsample(4, 5)


def test_nonlocal_block_is_identity_at_init():
    x = torch.randn(2, 8, 6, 5)
    assert torch.equal(NonLocalBlock(8)(x), x)


def test_nonlocal_chunked_attention_equals_unchunked():
    torch.manual_seed(0)
    block = NonLocalBlock(8, reduction=2)
    randomise_(block.out)
    x = torch.randn(2, 8, 7, 9)  # 63 positions: chunks of 5 leave a ragged last chunk
    whole = block(x, chunk_size=10_000)
    assert not torch.allclose(whole, x)
    for chunk in (1, 5, 32):
        torch.testing.assert_close(block(x, chunk_size=chunk), whole, rtol=0, atol=1e-5)
    # the memory budget picks chunks by itself: 2*63*63 scores > 500, so this is chunked
    block.max_attention_elements = 500
    torch.testing.assert_close(block(x), whole, rtol=0, atol=1e-5)


def test_nonlocal_chunked_gradients_equal_unchunked():
    torch.manual_seed(0)
    block = NonLocalBlock(4)
    randomise_(block.out)
    x = torch.randn(1, 4, 5, 6, requires_grad=True)
    grads = []
    for chunk in (1000, 7):  # the chunked path recomputes in backward (checkpointing)
        block.zero_grad()
        x.grad = None
        block(x, chunk_size=chunk).square().sum().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in block.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


# ISRNet ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("nonlocal_block", [False, True])
def test_isrnet_shapes_and_finite(scale, channels, nonlocal_block):
    torch.manual_seed(0)
    net = ISRNet(tiny_isrnet(scale=scale, channels=channels, nonlocal_block=nonlocal_block))
    randomise_(net.tail)
    assert (net.scale, net.channels, net.size_multiple) == (scale, channels, 4)
    x = torch.rand(2, channels, 8, 12)
    y = net(x)
    assert y.shape == (2, channels, 8 * scale, 12 * scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_isrnet_every_activation_runs(act):
    net = ISRNet(tiny_isrnet(activation=act, levels=1))
    cls = {"relu": torch.nn.ReLU, "elu": torch.nn.ELU, "leaky_relu": torch.nn.LeakyReLU,
           "prelu": torch.nn.PReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}[act]
    assert any(isinstance(m, cls) for m in net.modules())
    randomise_(net.tail)
    y = net(torch.rand(1, 3, 6, 4))
    assert y.shape == (1, 3, 12, 8) and torch.isfinite(y).all()
    y.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_isrnet_starts_as_bicubic(scale):
    torch.manual_seed(0)
    cfg = ISRNetConfig(scale=scale)
    net = ISRNet(cfg)
    assert cfg.scale == net.scale and 150_000 <= sum(p.numel() for p in net.parameters()) <= 350_000
    x = torch.rand(1, 3, 16, 16)
    y = net(x)
    assert (y - bicubic(x, cfg.scale)).abs().mean() < 0.05
    y.mean().backward()  # zero tail: gradient reaches it, so training can start
    assert net.tail.weight.grad.abs().sum() > 0


def test_isrnet_flat_variant_without_levels():
    net = ISRNet(tiny_isrnet(levels=0))
    assert net.size_multiple == 1 and len(net.enc_blocks) == len(net.up) == 0
    assert net(torch.rand(1, 3, 5, 7)).shape == (1, 3, 10, 14)


@pytest.mark.parametrize("nonlocal_block", [False, True])
def test_isrnet_encoder_decoder_parameters_partition(nonlocal_block):
    net = ISRNet(tiny_isrnet(nonlocal_block=nonlocal_block, activation="prelu"))
    enc = {id(p) for p in net.encoder_parameters()}
    dec = {id(p) for p in net.decoder_parameters()}
    every = {id(p) for p in net.parameters()}
    assert enc and dec and not enc & dec and enc | dec == every
    assert {id(p) for p in net.tail.parameters()} <= dec
    assert {id(p) for p in net.upsampler.parameters()} <= dec
    assert {id(p) for p in net.bottleneck.parameters()} <= enc
    # every top-level child is named in exactly one of the two lists
    assert sorted(ISRNet.ENCODER + ISRNet.DECODER) == sorted(name for name, _ in net.named_children())


def test_isrnet_rejects_sizes_off_the_multiple():
    with pytest.raises(ValueError, match="multiple of 4"):
        ISRNet(tiny_isrnet())(torch.rand(1, 3, 8, 10))


def test_isrnet_analytic_radius_bounds_the_measured_one():
    torch.manual_seed(0)
    net = ISRNet(tiny_isrnet(scale=3, blocks_per_level=1, bottleneck_blocks=1))
    randomise_(net.tail)
    measured = measure_receptive_radius(net)
    assert measured <= net.receptive_radius <= measured + 4


def test_isrnet_config_is_strict():
    with pytest.raises(ValidationError):
        ISRNetConfig(scale=5)
    with pytest.raises(ValidationError):
        ISRNetConfig(activation="gelu")
    with pytest.raises(ValidationError):
        ISRNetConfig(depth=3)
    assert ISRNetConfig.model_validate({"name": "isrnet", "scale": 4}).scale == 4


# LapSRN ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("channels", [1, 3])
def test_lapsrn_shapes_pyramid_and_finite(scale, channels):
    torch.manual_seed(0)
    net = LapSRN(tiny_lapsrn(scale=scale, channels=channels))
    randomise_(*(level.to_residual for level in net.levels))
    assert (net.scale, net.channels, net.size_multiple) == (scale, channels, 1)
    x = torch.rand(2, channels, 7, 5)  # odd sizes: LapSRN has no size multiple
    pyramid = net.forward_pyramid(x)
    expected = {2: [2], 3: [2, 3], 4: [2, 4], 8: [2, 4, 8]}[scale]
    assert [p.shape[-2:] for p in pyramid] == [(7 * s, 5 * s) for s in expected]
    y = net(x)
    assert y.shape == (2, channels, 7 * scale, 5 * scale) and torch.isfinite(y).all()
    torch.testing.assert_close(y, pyramid[-1])


def test_lapsrn_image_branch_is_bilinear_at_init():
    x = torch.rand(2, 3, 6, 9)
    up = BilinearUpsample2x(3)
    torch.testing.assert_close(up(x), F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    net = LapSRN(tiny_lapsrn(scale=4))
    bilinear2 = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(net(x), F.interpolate(bilinear2, scale_factor=2, mode="bilinear",
                                                     align_corners=False))


def test_lapsrn_analytic_radius_bounds_the_measured_one():
    torch.manual_seed(0)
    for scale in (2, 3, 4):
        net = LapSRN(tiny_lapsrn(scale=scale))
        randomise_(*(level.to_residual for level in net.levels))
        measured = measure_receptive_radius(net)
        assert measured <= net.receptive_radius <= measured + 2


def test_lapsrn_default_is_cpu_sized():
    cfg = LapSRNConfig()
    assert (cfg.width, cfg.depth, cfg.activation) == (32, 5, "leaky_relu")
    assert sum(p.numel() for p in LapSRN(cfg).parameters()) < 300_000


# discriminator ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(32, 32), (48, 40)])
def test_sr_discriminator_any_patch_size_and_features(size):
    torch.manual_seed(0)
    cfg = SRDiscriminatorConfig(width=4, depth=4)
    D = SRDiscriminator(cfg, channels=3)
    x = torch.rand(2, 3, *size)
    score = D(x)
    assert score.shape == (2,) and torch.isfinite(score).all()
    score2, feats = D(x, return_features=True)
    assert score2.shape == (2,) and len(feats) == cfg.depth
    assert [f.shape[1] for f in feats] == [4, 8, 16, 32]
    assert feats[-1].shape[-2:] == (-(-size[0] // 16), -(-size[1] // 16))  # stride 2, padding 1: ceil


def test_sr_discriminator_spectral_norm_everywhere():
    D = SRDiscriminator(SRDiscriminatorConfig(width=4, depth=2), channels=1)
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    with pytest.raises(ValidationError):
        SRDiscriminatorConfig(width=32, depth=4, norm="batch")


# save / load ----------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [
    lambda: ISRNet(tiny_isrnet(scale=3, nonlocal_block=True, activation="prelu")),
    lambda: LapSRN(tiny_lapsrn(scale=4, channels=1)),
    lambda: SRDiscriminator(SRDiscriminatorConfig(width=4, depth=2), channels=1),
])
def test_state_dict_roundtrip(build):
    torch.manual_seed(0)
    net = build()
    with torch.no_grad():  # move every weight off its (partly zero, partly shared-pattern) init
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    net.eval()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    other = build().eval()
    other.load_state_dict(torch.load(buf, weights_only=True))
    channels = 1 if isinstance(net, (LapSRN, SRDiscriminator)) else 3
    x = torch.rand(1, channels, 32, 32)
    assert torch.equal(net(x), other(x))
