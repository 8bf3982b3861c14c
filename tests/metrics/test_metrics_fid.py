"""FID/KID with pluggable feature networks: sanity on real digits, spec parsing, TorchScript path."""

import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genforge.errors import UserError
from genforge.metrics.digits_net import real_digits
from genforge.metrics.fid import FIDEvaluator, ImageFeatures, extract_features, feature_network, fid_kid

KID_SUBSETS = 20  # fewer than the default: keeps the suite fast


@pytest.fixture(scope="module")
def real():
    return real_digits(32)


@pytest.fixture(scope="module")
def digits_features():
    return feature_network("digits", "cpu")


@pytest.fixture(scope="module")
def evaluator(real, digits_features):
    return FIDEvaluator(real[0], digits_features, kid_subsets=KID_SUBSETS)


@pytest.fixture(scope="module")
def score(evaluator, real):
    """FID/KID of the real digits against a corrupted copy, memoized: ("noise", std), ("blur", sigma) or None."""
    cache = {}

    def get(corruption=None):
        if corruption not in cache:
            x = real[0]
            if corruption is not None:
                kind, level = corruption
                x = noisy(x, level) if kind == "noise" else blurred(x, level)
            cache[corruption] = evaluator(x)
        return cache[corruption]

    return get


def noisy(x, std, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def blurred(x, sigma):
    t = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(x, (3, 3, 3, 3), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, 7))
    return F.conv2d(x, k.view(1, 1, 7, 1))


def test_digits_features(digits_features, real):
    assert isinstance(digits_features, ImageFeatures)
    f = extract_features(real[0][:10], digits_features)
    assert f.shape == (10, digits_features.num_features) and f.dtype == torch.float64


def test_identical_sets_give_zero(score):
    same = score()
    assert set(same) == {"fid", "kid", "kid_std"} and all(isinstance(v, float) for v in same.values())
    assert same["fid"] < 1e-3 * score(("noise", 0.3))["fid"]
    # KID's unbiased estimator on overlapping subsets of one set sits a hair below 0
    assert abs(same["kid"]) < 0.05 * score(("noise", 0.6))["kid"]


def test_fid_grows_with_noise(score):
    fids = [score()["fid"]] + [score(("noise", s))["fid"] for s in (0.1, 0.3, 0.6)]
    assert fids == sorted(fids) and len(set(fids)) == 4, fids


def test_kid_grows_with_noise(score):
    kids = [score()["kid"]] + [score(("noise", s))["kid"] for s in (0.3, 0.6)]
    assert kids == sorted(kids) and len(set(kids)) == 3, kids
    assert kids[-1] > 0.01


def test_fid_grows_with_blur(score):
    fids = [score()["fid"]] + [score(("blur", s))["fid"] for s in (0.5, 1.0, 2.0)]
    assert fids == sorted(fids) and len(set(fids)) == 4, fids


def test_missing_classes_cost_more_than_sampling_noise(real, digits_features):
    x, y = real
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    halves = fid_kid(x[perm[:898]], x[perm[898:]], digits_features, kid_subsets=KID_SUBSETS)
    dropped = fid_kid(x, x[y < 5], digits_features, kid_subsets=KID_SUBSETS)
    assert dropped["fid"] > 10 * halves["fid"]
    assert dropped["kid"] > 10 * abs(halves["kid"])


def test_deterministic_and_leaves_global_rng_alone(real, digits_features):
    x = real[0]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = fid_kid(x[:600], x[600:1200], digits_features, kid_subsets=5, kid_subset_size=300)
    assert torch.equal(before, torch.get_rng_state())
    b = fid_kid(x[:600], x[600:1200], "digits", kid_subsets=5, kid_subset_size=300)
    assert a == b


def test_kid_subset_size_is_capped(real, digits_features):
    x = real[0]
    out = fid_kid(x[:40], x[40:70], digits_features, kid_subsets=3, kid_subset_size=1000)
    assert all(v == v for v in out.values())  # no NaN


def test_too_few_samples_is_a_user_error(real, digits_features):
    with pytest.raises(UserError, match="at least 2"):
        fid_kid(real[0][:1], real[0][:10], digits_features)


def test_adapter_works_directly_inside_torchmetrics(real, digits_features, score):
    from torchmetrics.image.fid import FrechetInceptionDistance

    x = real[0]
    metric = FrechetInceptionDistance(feature=digits_features)
    metric.update(x, real=True)
    metric.update(noisy(x, 0.3), real=False)
    value = metric.compute()
    assert value.dtype == torch.float64
    assert float(value) == pytest.approx(score(("noise", 0.3))["fid"], rel=1e-9)


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize("spec", ["", "nope", "digits:extra", "inceptionv3", "torchscript", "resnet:/x.pt"])
def test_unknown_spec(spec):
    with pytest.raises(UserError, match="unknown feature network"):
        feature_network(spec)


@pytest.mark.parametrize("kind", ["torchscript", "inception"])
def test_missing_file(kind, tmp_path):
    with pytest.raises(UserError, match="not found"):
        feature_network(f"{kind}:{tmp_path / 'missing.pt'}")
    with pytest.raises(UserError, match="needs a path"):
        feature_network(f"{kind}:")


def test_corrupt_torchscript_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(UserError, match="cannot load TorchScript"):
        feature_network(f"torchscript:{bad}")


def test_inception_without_torch_fidelity(tmp_path, monkeypatch):
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"\0")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails as if not installed
    with pytest.raises(UserError, match="pip install torch-fidelity"):
        feature_network(f"inception:{weights}")


class TinyFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 2).flatten(1)


def test_torchscript_feature_network(tmp_path, real):
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(TinyFeatures()).save(str(path))
    features = feature_network(f"torchscript:{path}", "cpu")
    x = real[0]
    f = extract_features(x[:5], features)
    assert f.shape == (5, 24) and f.dtype == torch.float64 and features.num_features == 24
    same = fid_kid(x, x, features, kid_subsets=5)
    worse = fid_kid(x, noisy(x, 0.6), features, kid_subsets=5)
    assert same["fid"] < 1e-3 * worse["fid"]
    assert worse["kid"] > abs(same["kid"])
