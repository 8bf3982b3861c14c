"""The shipped DigitsNet: accuracy on real digits, input handling, loading errors, judging helpers."""

import numpy as np
import pytest
import torch

from genforge.errors import UserError
from genforge.metrics.digits_net import (
    WEIGHTS_PATH,
    DigitsNet,
    class_histogram,
    classes_covered,
    holdout_split,
    load_digits_net,
    predict_logits,
    real_digits,
    requested_label_fraction,
    train_digits_net,
)


@pytest.fixture(scope="module")
def net():
    return load_digits_net("cpu")


@pytest.fixture(scope="module")
def digits32():
    return real_digits(32)


def test_weights_are_shipped_and_small():
    assert WEIGHTS_PATH.is_file()
    assert WEIGHTS_PATH.stat().st_size < 500_000


def test_loaded_net_is_frozen_eval(net):
    assert isinstance(net, DigitsNet)
    assert not net.training
    assert all(not p.requires_grad for p in net.parameters())
    assert net.num_features in (64, 128)


def test_real_digits_match_the_convention(digits32):
    x, y = digits32
    assert x.shape == (1797, 1, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert y.shape == (1797,) and set(y.tolist()) == set(range(10))
    x8, _ = real_digits(8)
    from sklearn.datasets import load_digits

    u8 = np.round(load_digits().images * 255 / 16)
    assert np.allclose((x8[:, 0].numpy() + 1) * 127.5, u8, atol=1e-3)


def test_accuracy_and_coverage_on_real_digits(net, digits32):
    x, y = digits32
    logits = predict_logits(net, x)
    assert logits.shape == (1797, 10)
    assert requested_label_fraction(logits, y) >= 0.97
    hist = class_histogram(logits)
    assert hist.shape == (10,) and hist.sum() == pytest.approx(1.0)
    assert (hist > 0.05).all()  # every class is covered (each is ~10% of digits)
    assert classes_covered(logits) == 10


@pytest.mark.parametrize("size", [16, 64])
def test_other_sizes(net, size):
    x, y = real_digits(size)
    assert requested_label_fraction(predict_logits(net, x), y) >= 0.95


def test_rgb_input_is_converted_to_grey(net, digits32):
    x, y = digits32
    grey = predict_logits(net, x[:200])
    rgb = predict_logits(net, x[:200].repeat(1, 3, 1, 1))
    assert torch.allclose(grey, rgb, atol=1e-4)


def test_features_shape(net, digits32):
    x, _ = digits32
    with torch.inference_mode():
        f = net.features(x[:7])
        out = net(x[:7])
    assert f.shape == (7, net.num_features)
    assert out.shape == (7, 10)
    with pytest.raises(ValueError):
        net(torch.zeros(2, 2, 32, 32))


def test_holdout_split_is_fixed_and_stratified(digits32):
    _, y = digits32
    tr, te = holdout_split(y)
    tr2, te2 = holdout_split(y)
    assert np.array_equal(te, te2) and np.array_equal(tr, tr2)
    assert len(te) == 360 and len(tr) == 1437
    assert not set(tr) & set(te)
    counts = np.bincount(y.numpy()[te], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_missing_weights_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_digits_net(path=tmp_path / "nope.safetensors")


def test_corrupt_weights_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    with pytest.raises(UserError, match="cannot load"):
        load_digits_net(path=bad)


def test_histogram_and_requested_label_helpers():
    logits = torch.zeros(4, 10)
    logits[0, 3] = logits[1, 3] = logits[2, 7] = logits[3, 1] = 1.0
    hist = class_histogram(logits)
    assert hist[3] == 0.5 and hist[7] == 0.25 and hist[1] == 0.25 and hist.sum() == 1.0
    assert classes_covered(logits, min_fraction=0.3) == 1
    assert requested_label_fraction(logits, torch.tensor([3, 3, 7, 2])) == 0.75
    assert requested_label_fraction(logits, 3) == 0.5
    assert requested_label_fraction(logits.numpy(), np.array([3, 0, 0, 1])) == 0.5
    with pytest.raises(ValueError):
        requested_label_fraction(logits, torch.tensor([1, 2]))


def test_training_round_trip(tmp_path):
    out = tmp_path / "w.safetensors"
    summary = train_digits_net(out, seed=0, epochs=1, verbose=False)
    assert out.is_file() and 0.0 <= summary["holdout_accuracy"] <= 1.0
    reloaded = load_digits_net(path=out)
    assert reloaded.num_features == summary["num_features"]
