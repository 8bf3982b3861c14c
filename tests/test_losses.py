import torch
import torch.nn.functional as F

from genforge.losses import charbonnier, clip_weights, d_loss, g_loss, gaussian_kl, gradient_penalty, reconstruction


def test_bce_matches_torch():
    real, fake = torch.randn(7), torch.randn(7)
    expect = F.binary_cross_entropy_with_logits(real, torch.ones(7)) + \
        F.binary_cross_entropy_with_logits(fake, torch.zeros(7))
    assert torch.allclose(d_loss("bce", real, fake), expect)
    # non-saturating generator loss: -log sigmoid(D(G(z)))
    assert torch.allclose(g_loss("bce", fake), F.binary_cross_entropy_with_logits(fake, torch.ones(7)))


def test_wasserstein_hinge_lsgan_values():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-1.0, 0.0])
    assert d_loss("wgan", real, fake) == -0.5 - 1.25
    assert d_loss("hinge", real, fake) == (0 + 0.5) / 2 + (0 + 1) / 2
    assert torch.isclose(d_loss("lsgan", real, fake), torch.tensor(0.5 * (1 + 0.25) / 2 + 0.5 * 0.5))
    assert g_loss("hinge", fake) == 0.5 and g_loss("wgan-gp", fake) == 0.5


def test_gradient_penalty_zero_for_unit_slope_critic():
    # D(x) = sum(w * x) with ||w|| = 1 has gradient norm 1 everywhere
    w = torch.randn(1, 2, 3, 3)
    w = w / w.norm()
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    assert gradient_penalty(critic, real, fake) < 1e-10
    critic2 = lambda x: 3 * (x * w).flatten(1).sum(1)  # noqa: E731
    assert torch.isclose(gradient_penalty(critic2, real, fake), torch.tensor(4.0))


def test_clip_weights():
    m = torch.nn.Linear(3, 3)
    with torch.no_grad():
        m.weight.mul_(100)
    clip_weights(m, 0.01)
    assert m.weight.abs().max() <= 0.01


def test_kl_and_reconstruction():
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)) == 0
    assert gaussian_kl(torch.ones(2, 3), torch.zeros(2, 3)) == 1.5
    x = torch.rand(2, 1, 4, 4) * 2 - 1
    assert reconstruction("mse", x, x) == 0 and reconstruction("l1", x, x) == 0
    assert reconstruction("bce", x, x) < reconstruction("bce", -x, x)
    assert charbonnier(x, x) < 1.1e-3
