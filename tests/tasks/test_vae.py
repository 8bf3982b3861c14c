"""The VAE's ex-post latent density (model.latent_prior: gmm): fitting, sampling from it, carrying it
through checkpoints, model folders and ONNX, and loading states from before it."""

import json

import pytest
import torch

from genforge.engine import checkpoint
from genforge.models.sampling import draw_latents, interpolation_latents, prior_tensors
from genforge.models.vae import VAEConfig, VAEDecoder
from genforge.train import train
from tests.conftest import tiny_raw


def _decoder(**kw) -> VAEDecoder:
    return VAEDecoder(VAEConfig(image_size=8, width=4, **kw))


def test_draws_follow_the_fitted_mixture():
    g = torch.Generator().manual_seed(0)
    # two well separated clusters in 2-d, 1:3, with different spreads
    a = torch.randn(500, 2, generator=g) * 0.2 + torch.tensor([-4.0, 0.0])
    b = torch.randn(1500, 2, generator=g) * torch.tensor([1.0, 0.5]) + torch.tensor([4.0, 1.0])
    dec = _decoder(latent_dim=2, latent_prior="gmm", prior_components=2)
    assert prior_tensors(dec) == {}  # not fitted yet
    dec.fit_prior(torch.cat([a, b]))
    prior = prior_tensors(dec)
    assert sorted(prior["prior_weights"].tolist()) == pytest.approx([0.25, 0.75], abs=0.01)
    z = draw_latents(dec, 8000, torch.Generator().manual_seed(1))
    right = z[:, 0] > 0
    assert float(right.float().mean()) == pytest.approx(0.75, abs=0.02)
    assert z[right].mean(0).tolist() == pytest.approx([4.0, 1.0], abs=0.06)
    assert z[right].std(0).tolist() == pytest.approx([1.0, 0.5], abs=0.05)
    assert z[~right].std(0).tolist() == pytest.approx([0.2, 0.2], abs=0.02)
    # same seed, same draws
    assert torch.equal(z, draw_latents(dec, 8000, torch.Generator().manual_seed(1)))


def test_diag_covariance_and_fewer_points_than_components():
    dec = _decoder(latent_dim=3, latent_prior="gmm", prior_components=8, prior_covariance="diag")
    dec.fit_prior(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)))
    prior = prior_tensors(dec)
    assert float(prior["prior_weights"].sum()) == pytest.approx(1.0)
    assert int((prior["prior_weights"] > 0).sum()) == 5  # unused components keep weight 0: never drawn
    tril = prior["prior_scale_tril"][:5]
    assert torch.equal(tril, torch.diag_embed(torch.diagonal(tril, dim1=1, dim2=2)))


def test_without_a_prior_draws_are_standard_normal_as_before():
    dec = _decoder(latent_dim=5)
    assert torch.equal(draw_latents(dec, 7, torch.Generator().manual_seed(3)),
                       torch.randn(7, 5, generator=torch.Generator().manual_seed(3)))
    z = interpolation_latents(dec, 2, 5).view(2, 5, 5)
    assert z[:, 1:-1].norm(dim=-1).min() > 0.5 * z[:, [0, -1]].norm(dim=-1).min()  # slerp keeps the norm


def test_interpolation_with_a_prior_is_a_straight_line_between_draws():
    dec = _decoder(latent_dim=2, latent_prior="gmm", prior_components=2)
    dec.fit_prior(torch.cat([torch.randn(50, 2) + 5, torch.randn(50, 2) - 5]))
    z = interpolation_latents(dec, 3, 5, seed=2).view(3, 5, 2)
    assert torch.allclose(z[:, 2], (z[:, 0] + z[:, -1]) / 2, atol=1e-5)


def test_a_state_from_before_the_prior_loads_as_not_fitted():
    old = {k: v for k, v in _decoder(latent_dim=4).state_dict().items() if not k.startswith("prior_")}
    dec = _decoder(latent_dim=4, latent_prior="gmm", prior_components=3)
    dec.load_state_dict(old)
    assert dec.prior_weights.shape == (3,) and prior_tensors(dec) == {}


def _run(tmp_path, name: str, prior: str):
    raw = tiny_raw("vae", model={"latent_prior": prior, "prior_components": 3}, train={"steps": 6})
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(raw))
    return train(str(path), run_dir=str(tmp_path / name), progress=False)


def test_training_fits_the_prior_into_checkpoints_and_the_model(tmp_path):
    from genforge import load
    from genforge.deploy.export import export_onnx

    gmm, normal = _run(tmp_path, "gmm", "gmm"), _run(tmp_path, "normal", "normal")
    # fitting draws no torch random numbers: the training trajectory is the same
    assert torch.equal(checkpoint.load_checkpoint(checkpoint.latest(gmm))["task"]["networks"]["vae"]
                       ["encoder.to_stats.weight"],
                       checkpoint.load_checkpoint(checkpoint.latest(normal))["task"]["networks"]["vae"]
                       ["encoder.to_stats.weight"])
    export = checkpoint.load_checkpoint(checkpoint.latest(gmm))["export"]
    assert float(export["prior_weights"].sum()) == pytest.approx(1.0)
    model = load(str(gmm))
    assert prior_tensors(model.module)["prior_means"].shape == (3, 8)
    # the ONNX file carries the mixture: both runtimes draw the same z, so the same images
    export_onnx(str(gmm), tmp_path / "gmm.onnx")
    onnx = load(str(tmp_path / "gmm.onnx"))
    assert torch.allclose(onnx.generate(6, seed=4), model.generate(6, seed=4), atol=1e-4)
    assert torch.allclose(onnx.interpolate(2, 3, seed=1), model.interpolate(2, 3, seed=1), atol=1e-4)
    assert not torch.allclose(load(str(normal)).generate(6, seed=4), model.generate(6, seed=4))


def test_prior_draws_spread_the_fit_over_the_posteriors():
    from genforge.models.vae import VAE
    vae = VAE(VAEConfig(image_size=8, width=4, latent_dim=3, latent_prior="gmm", prior_components=2))
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    means = vae.prior_sample(images)
    draws = vae.prior_sample(images, draws=4, seed=1)
    assert means.shape == (10, 3) and draws.shape == (40, 3)
    assert torch.equal(draws, vae.prior_sample(images, draws=4, seed=1))  # a private, seeded RNG
    state = torch.random.get_rng_state()
    vae.prior_sample(images, draws=4, seed=2)
    assert torch.equal(state, torch.random.get_rng_state())
    # each draw is its image's mean plus noise of the posterior's scale
    assert torch.allclose(draws.view(4, 10, 3).mean(0), means, atol=3.0)
    assert not torch.allclose(draws.view(4, 10, 3)[0], means)


def test_refit_script_changes_the_prior_of_a_finished_run(tmp_path):
    import importlib.util

    from genforge import load
    from tests.conftest import ROOT
    spec = importlib.util.spec_from_file_location("refit", ROOT / "scripts" / "refit_vae_prior.py")
    refit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refit)
    run = _run(tmp_path, "gmm", "gmm")
    before = checkpoint.load_checkpoint(checkpoint.latest(run))
    assert refit.main([str(run), "--set", "model.prior_components=2", "--set", "model.prior_draws=3"]) == 0
    after = checkpoint.load_checkpoint(checkpoint.latest(run))
    assert after["export"]["prior_means"].shape == (2, 8) and after["step"] == before["step"]
    assert torch.equal(after["export"]["body.0.0.weight"], before["export"]["body.0.0.weight"])
    assert "prior_draws: 3" in (run / "config.yaml").read_text()
    assert prior_tensors(load(str(run)).module)["prior_weights"].shape == (2,)
    assert refit.main([str(run), "--set", "model.width=16"]) == 2  # only the prior's keys
