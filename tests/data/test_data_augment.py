import pytest
import torch

from genforge.data.augment import Augment
from genforge.errors import ConfigError

OPTIONS = {
    "hflip": True,
    "vflip": True,
    "scale_crop": 0.5,
    "translate": 0.2,
    "brightness": 0.3,
    "contrast": 0.5,
    "noise": 0.1,
}


def batch(b=32, c=3, size=16):
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, c, size, size, generator=g) * 1.6 - 0.8


def test_identity_when_off():
    x = batch()
    augment = Augment()
    assert not augment.enabled and augment(x) is x


@pytest.mark.parametrize("option", OPTIONS)
def test_each_option_changes_the_batch_and_keeps_shape_and_range(option):
    torch.manual_seed(0)
    x = batch()
    augment = Augment(**{option: OPTIONS[option]})
    out = augment(x)
    assert augment.enabled and out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, x)


def test_all_options_together():
    torch.manual_seed(0)
    x = batch()
    out = Augment(**OPTIONS)(x)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("option, dim", [("hflip", 3), ("vflip", 2)])
def test_flips_are_per_sample_and_exact(option, dim):
    torch.manual_seed(0)
    x = batch()
    out = Augment(**{option: True})(x)
    mirrored = [torch.equal(o, s.flip(dim - 1)) for o, s in zip(out, x)]
    unchanged = [torch.equal(o, s) for o, s in zip(out, x)]
    assert any(mirrored) and any(unchanged)
    assert all(m or u for m, u in zip(mirrored, unchanged))


def test_parameters_differ_between_samples():
    torch.manual_seed(0)
    x = torch.zeros(8, 1, 4, 4)
    shift = Augment(brightness=0.5)(x).mean(dim=(1, 2, 3))
    assert shift.unique().numel() == 8


def test_geometry_on_a_constant_image_adds_no_border():
    torch.manual_seed(0)
    x = torch.full((4, 3, 8, 8), 0.25)
    out = Augment(scale_crop=0.3, translate=0.4)(x)
    torch.testing.assert_close(out, x)


def test_same_rng_state_gives_same_output():
    x = batch()
    augment = Augment(**OPTIONS)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = augment(x)
    second = augment(x)
    torch.set_rng_state(state)
    assert torch.equal(augment(x), first) and not torch.equal(first, second)


def test_gradients_flow_through():
    x = batch(b=4).requires_grad_()
    Augment(**OPTIONS)(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "bad", [{"scale_crop": 0.0}, {"scale_crop": 1.5}, {"translate": -0.1}, {"noise": -1.0}]
)
def test_invalid_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        Augment(**bad)
