"""Precision/recall (k-NN manifolds) in the digits features and the pixel-space Frechet distance:
identity, the real-vs-real floor, blur and low contrast, dropped classes, determinism, the eval path."""

import pytest
import torch

from genforge.data.degrade import gaussian_blur
from genforge.errors import UserError
from genforge.metrics.digits_net import real_digits
from genforge.metrics.fid import extract_features, feature_network
from genforge.metrics.precision_recall import (
    generation_scores,
    native_size,
    pixel_frechet_distance,
    precision_recall,
)


@pytest.fixture(scope="module")
def digits():
    """The real digits at 16x16 (the shipped generators' size), their labels and two fixed halves."""
    x, y = real_digits(16)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    half = len(x) // 2
    return x, y, perm[:half], perm[half : 2 * half]


@pytest.fixture(scope="module")
def features(digits):
    return extract_features(digits[0], feature_network("digits", "cpu"))


@pytest.fixture(scope="module")
def pixel_floor(digits):
    x, _, a, b = digits
    return pixel_frechet_distance(x[a], x[b], size=8)


def test_a_set_against_itself(digits, features):
    assert precision_recall(features, features) == {"precision": 1.0, "recall": 1.0}
    assert pixel_frechet_distance(digits[0], digits[0], size=8) < 1e-9


def test_real_halves_are_close(digits, features, pixel_floor):
    _, _, a, b = digits
    scores = precision_recall(features[a], features[b])
    assert scores["precision"] > 0.8 and scores["recall"] > 0.8
    assert 0 < pixel_floor < 0.05


@pytest.mark.parametrize("sigma", [0.7, 1.0])
def test_blur_raises_pixel_fd(digits, pixel_floor, sigma):
    x, _, a, b = digits
    assert pixel_frechet_distance(x[a], gaussian_blur(x[b], sigma), size=8) > 3 * pixel_floor


@pytest.mark.parametrize("contrast", [0.85, 0.7])
def test_low_contrast_raises_pixel_fd(digits, pixel_floor, contrast):
    x, _, a, b = digits
    assert pixel_frechet_distance(x[a], x[b] * contrast, size=8) > 4 * pixel_floor  # around mid-grey
    darker = (x[b] + 1) * contrast - 1  # black stays black, the strokes dim
    assert pixel_frechet_distance(x[a], darker, size=8) > 4 * pixel_floor


def test_pixel_fd_grows_with_blur(digits):
    x, _, a, b = digits
    values = [pixel_frechet_distance(x[a], gaussian_blur(x[b], s), size=8) for s in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[-1] > 10 * values[0]


def test_dropped_classes_lose_recall_not_precision(digits, features):
    _, y, a, b = digits
    some = b[y[b] < 5]  # real holdout digits, but only 0..4
    scores = precision_recall(features[a], features[some])
    assert scores["precision"] > 0.8 and scores["recall"] < 0.6
    full = precision_recall(features[a], features[b])
    assert scores["recall"] < full["recall"] - 0.25


def test_off_manifold_samples_lose_precision(digits, features):
    x, _, a, b = digits
    g = torch.Generator().manual_seed(1)
    noisy = (x[b] + 0.6 * torch.randn(x[b].shape, generator=g)).clamp(-1, 1)
    scores = precision_recall(features[a], extract_features(noisy, feature_network("digits", "cpu")))
    assert scores["precision"] < 0.5


def test_deterministic_and_chunk_free(digits, features):
    x, _, a, b = digits
    first = precision_recall(features[a], features[b])
    assert precision_recall(features[a], features[b], chunk=97) == first
    assert pixel_frechet_distance(x[a], x[b], size=8) == pixel_frechet_distance(x[a], x[b], size=8)


def test_k_and_sizes(features):
    assert precision_recall(features[:50], features[50:100], k=1) != precision_recall(features[:50], features[50:100])
    with pytest.raises(UserError, match="more than 3"):
        precision_recall(features[:3], features[:10])
    with pytest.raises(ValueError, match="same|differ"):
        precision_recall(features, features[:, :5])
    with pytest.raises(UserError, match="at least 2"):
        pixel_frechet_distance(torch.zeros(1, 1, 8, 8), torch.zeros(5, 1, 8, 8))


def test_native_size():
    assert native_size("digits", "train", 16) == 8
    assert native_size("digits", "train", 4) == 4
    assert native_size("folder:/nowhere", "train", 32) == 32


def test_generation_scores_report_the_real_halves(digits, features):
    x, _, _, b = digits
    net = feature_network("digits", "cpu")
    out = generation_scores(x, gaussian_blur(x[b], 1.0), ["precision", "recall", "pixel_fd"], features=net, size=8)
    assert set(out) == {"precision", "recall", "pixel_fd",
                        "precision_real_halves", "recall_real_halves", "pixel_fd_real_halves"}
    assert out["pixel_fd"] > 3 * out["pixel_fd_real_halves"]
    assert out["precision_real_halves"] == out["recall_real_halves"]  # both ways: the floor is symmetric


def test_fresh_real_images_score_the_floor(digits):
    """Like for like: real images not in the reference set score about what the real halves do."""
    x, _, a, b = digits
    net = feature_network("digits", "cpu")
    out = generation_scores(x[a], x[b], ["precision", "recall", "pixel_fd"], features=net, size=8)
    assert 0.5 < out["pixel_fd"] / out["pixel_fd_real_halves"] < 2
    for m in ("precision", "recall"):
        assert abs(out[m] - out[f"{m}_real_halves"]) < 0.06
    assert set(generation_scores(x[:100], x[100:200], ["pixel_fd"])) == {"pixel_fd", "pixel_fd_real_halves"}
    with pytest.raises(UserError, match="feature network"):
        generation_scores(x[:100], x[100:200], ["recall"])


def test_eval_of_a_shipped_generator():
    from genforge.evaluate import evaluate, metrics_help

    report = evaluate("digits-wgangp", ["fid", "precision", "recall", "pixel_fd"], n=120)
    for m in ("fid", "precision", "recall", "pixel_fd"):
        assert m in report and f"{m}_real_halves" in report
    assert 0 <= report["precision"] <= 1 and 0 <= report["recall"] <= 1 and report["pixel_fd"] > 0
    assert all(m in metrics_help() for m in ("precision", "recall", "pixel_fd"))
