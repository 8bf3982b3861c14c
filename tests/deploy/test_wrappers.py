"""The one inference base (deploy/infer.py): what every family's wrapper shares, and the
Translator keeping 16-bit and alpha the way the Upscaler does."""

import numpy as np
import pytest
import torch

import genforge
from genforge import registry
from genforge.deploy.infer import pad_to_multiple, quantise, split_image, tiled, with_alpha
from tests.conftest import random_folder


def test_quantise_and_alpha_helpers():
    y = torch.tensor([[[-0.2, 0.0, 0.5, 1.0, 1.7]]])
    assert quantise(y, 255).ravel().tolist() == [0, 0, 128, 255, 255]
    assert quantise(y * 2 - 1, 65535, signed=True).dtype == np.uint16
    rgba = np.zeros((4, 5, 4), np.uint16)
    rgba[..., 3] = 65535
    colour, alpha, peak = split_image(rgba)
    assert colour.shape == (4, 5, 3) and alpha.shape == (4, 5, 1) and peak == 65535
    out = with_alpha(np.zeros((4, 5, 1), np.uint8), alpha)
    assert out.shape == (4, 5, 4) and out.dtype == np.uint8 and (out[..., 3] == 255).all()
    x = torch.arange(30.0).reshape(1, 1, 5, 6)
    assert pad_to_multiple(x, 4).shape[-2:] == (8, 8)
    assert torch.equal(pad_to_multiple(x, 4)[..., :5, :6], x)


def test_tiled_equals_untiled_for_a_pointwise_network():
    x = torch.rand(3, 37, 29)
    run = lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2)  # noqa: E731  (a x2 "network")
    whole = tiled(run, x, tile=0, overlap=0, scale=2, multiple=1, peak=255)
    assert np.array_equal(tiled(run, x, tile=16, overlap=2, scale=2, multiple=4, peak=255), whole)


def test_translator_keeps_16_bit_and_alpha(tmp_path):
    tr = genforge.load(str(random_folder(tmp_path, "cyclegan", "resnet")), device="cpu")
    rng = np.random.default_rng(0)
    image16 = rng.integers(0, 65536, (20, 24, 4), dtype=np.uint16)
    out16 = tr.translate_array(image16)
    assert out16.dtype == np.uint16 and out16.shape == (20, 24, 4)
    assert np.array_equal(out16[..., 3], image16[..., 3])  # alpha passes through at full depth
    image8 = np.round(image16 / 257).astype(np.uint8)
    out8 = tr.translate_array(image8)
    assert out8.dtype == np.uint8 and np.array_equal(out8[..., 3], image8[..., 3])
    assert np.abs(out16[..., :3] / 257.0 - out8[..., :3]).max() <= 1.5  # the same picture at 8 bits
    grey = tr.translate_array(image8[..., 0])
    assert grey.shape == (20, 24, 3)


@pytest.mark.parametrize("kind,name,keys", [
    ("gan", "dcgan", {"latent_dim", "num_classes", "image_size", "channels"}),
    ("superres", "lapsrn", {"scale", "channels"}),
    ("spade", "spade", {"kind", "label_nc", "style", "directions", "input"}),
])
def test_describe(tmp_path, kind, name, keys):
    wrapper = genforge.load(str(random_folder(tmp_path, kind, name)), device="cpu")
    info = wrapper.describe()
    assert info["task"] == registry.family_of(kind) and info["network"] == name and keys <= set(info)


def test_wrong_family_is_one_clear_error(tmp_path):
    from genforge.deploy.generator import Generation
    from genforge.errors import UserError
    with pytest.raises(UserError, match="is a super-resolution model, not a generator"):
        Generation(str(random_folder(tmp_path, "superres", "isrnet")))
