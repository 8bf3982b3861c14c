"""One shared test over every registered generation model with tiny configs."""

import io

import pytest
import torch

from genforge import registry
from genforge.models.dcgan import DCGANConfig, Discriminator, Generator
from genforge.models.vae import VAE, VAEConfig

SIZES = [8, 16, 32]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("num_classes", [0, 3])
@pytest.mark.parametrize("norm", ["batch", "instance", "spectral", "none"])
def test_dcgan_shapes_and_finite(size, num_classes, norm):
    cfg = DCGANConfig(image_size=size, channels=3, latent_dim=5, width=4, depth=2, num_classes=num_classes,
                      g_norm=norm, d_norm=norm)
    G, D = Generator(cfg), Discriminator(cfg)
    labels = (torch.tensor([0, 2]),) if num_classes else ()
    x = G(torch.randn(2, 5), *labels)
    assert x.shape == (2, 3, size, size)
    assert x.abs().max() <= 1.0 and torch.isfinite(x).all()
    out = D(x, *labels)
    assert out.shape == (2,) and torch.isfinite(out).all()


@pytest.mark.parametrize("act, cls", [("relu", torch.nn.ReLU), ("leaky_relu", torch.nn.LeakyReLU),
                                      ("elu", torch.nn.ELU), ("tanh", torch.nn.Tanh),
                                      ("sigmoid", torch.nn.Sigmoid)])
def test_activation_is_selectable(act, cls):
    cfg = DCGANConfig(image_size=8, width=4, d_activation=act, g_activation=act)
    assert any(isinstance(m, cls) for m in Discriminator(cfg).modules())
    assert sum(isinstance(m, cls) for m in Generator(cfg).modules()) >= 2


def test_discriminator_width_can_differ_from_the_generator():
    cfg = DCGANConfig(image_size=16, width=8, d_width=4)
    g_convs = [m.out_channels for m in Generator(cfg).body.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    d_convs = [m.out_channels for m in Discriminator(cfg).body.modules() if isinstance(m, torch.nn.Conv2d)]
    assert g_convs == [32, 16, 8] and d_convs == [4, 8, 16]
    same = DCGANConfig(image_size=16, width=8)
    assert [m.out_channels for m in Discriminator(same).body.modules() if isinstance(m, torch.nn.Conv2d)] == [8, 16, 32]


def test_conditional_generator_depends_on_label():
    torch.manual_seed(0)
    G = Generator(DCGANConfig(image_size=8, width=4, latent_dim=4, num_classes=2)).eval()
    z = torch.randn(1, 4)
    assert not torch.allclose(G(z, torch.tensor([0])), G(z, torch.tensor([1])))
    with pytest.raises(ValueError, match="conditional"):
        G(z)


def test_projection_discriminator_depends_on_label():
    D = Discriminator(DCGANConfig(image_size=8, width=4, num_classes=2))
    x = torch.randn(1, 1, 8, 8)
    assert D(x, torch.tensor([0])) != D(x, torch.tensor([1]))


def test_vae_shapes_and_conditioning():
    cfg = VAEConfig(image_size=16, width=4, latent_dim=3, num_classes=4)
    vae = VAE(cfg)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    recon, mu, logvar = vae(x, torch.tensor([1, 3]))
    assert recon.shape == x.shape and mu.shape == (2, 3) and logvar.shape == (2, 3)


@pytest.mark.parametrize("cfg", [DCGANConfig(image_size=16, width=4, num_classes=2),
                                 VAEConfig(image_size=8, width=4)])
def test_registered_generator_state_roundtrip(cfg):
    build = registry.model_row(cfg.name).build
    G = build(cfg).eval()
    buf = io.BytesIO()
    torch.save(G.state_dict(), buf)
    buf.seek(0)
    G2 = build(cfg).eval()
    G2.load_state_dict(torch.load(buf, weights_only=True))
    z = torch.randn(3, cfg.latent_dim)
    labels = (torch.tensor([0, 1, 0]),) if cfg.num_classes else ()
    assert torch.equal(G(z, *labels), G2(z, *labels))


@pytest.mark.parametrize("num_classes", [0, 3])
def test_standing_batchnorm_measures_the_generators_own_statistics(num_classes):
    from genforge.models.sampling import standing_batchnorm
    torch.manual_seed(0)
    G = Generator(DCGANConfig(image_size=8, width=4, latent_dim=4, num_classes=num_classes)).eval()
    norms = [m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:  # statistics that belong to other weights (as an EMA copy's do)
        m.running_mean.fill_(3.0)
        m.running_var.fill_(9.0)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    S = standing_batchnorm(G, batches=4, batch_size=256)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())  # the original is untouched
    assert S is not G and not S.training  # same mode as the original
    S2 = standing_batchnorm(G, batches=4, batch_size=256)  # deterministic
    assert all(torch.equal(a, b) for a, b in zip(S.state_dict().values(), S2.state_dict().values()))
    # eval mode with the standing statistics ~ train mode on a large batch of fresh latents
    z = torch.randn(4096, 4)
    labels = (torch.randint(0, num_classes, (4096,)),) if num_classes else ()
    with torch.no_grad():
        eval_mode = S(z, *labels)
        train_mode = S.train()(z, *labels)
        stale = G.eval()(z, *labels)
    assert (eval_mode - train_mode).abs().mean() < 0.02 < (stale - train_mode).abs().mean()


def test_standing_batchnorm_without_batchnorm_is_the_generator():
    from genforge.models.sampling import standing_batchnorm
    G = Generator(DCGANConfig(image_size=8, width=4, g_norm="instance"))
    assert standing_batchnorm(G) is G
