"""Convolutional VAE (Kingma & Welling 2014) with optional class conditioning.

The encoder is the DCGAN discriminator body and the decoder is the DCGAN generator, so the
VAE and the GANs are compared on the same architecture.

Sampling a VAE from N(0, I) draws codes the decoder rarely saw in training (the "holes" between the
encoder's posteriors give soft, ambiguous digits), so `latent_prior: gmm` fits a Gaussian mixture to
the encoder's means (or draws from its posteriors) of the training images after training, an ex-post
density estimate (Ghosh et al. 2020, "From variational to deterministic autoencoders"), and the decoder
carries it as buffers:
sampling, interpolation and the ONNX export draw z from it (models/sampling.draw_latents)."""

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from genforge.models.dcgan import ConvNetConfig, Discriminator, Generator
from genforge.models.sampling import PRIOR_TENSORS
from genforge.registry import register_model


class VAEConfig(ConvNetConfig):
    name: Literal["vae"] = "vae"
    g_norm: Literal["batch", "instance", "spectral", "none"] = "batch"
    d_norm: Literal["batch", "instance", "spectral", "none"] = "batch"
    latent_prior: Literal["normal", "gmm"] = Field(
        "normal", description="What z is sampled from: the N(0, I) of the ELBO, or a Gaussian mixture fitted "
        "to the encoder's posteriors of the training images after training (ex-post density estimation).")
    prior_components: int = Field(10, ge=1, le=256, description="Components of the gmm prior.")
    prior_covariance: Literal["full", "diag"] = Field("full", description="Covariance of each gmm component.")
    prior_draws: int = Field(0, ge=0, le=64, description="What the gmm is fitted to: 0, the encoder's means "
                             "(Ghosh et al.); n > 0, n draws per image from q(z | x), which keeps the spread of "
                             "the posteriors (the aggregate posterior) and so more of the data's variety.")


class Encoder(nn.Module):
    """images [+ labels] -> (mu, logvar) of q(z | x, y)."""

    def __init__(self, cfg: ConvNetConfig):
        super().__init__()
        self.body = Discriminator(cfg.model_copy(update={"num_classes": 0}))
        del self.body.head
        self.embed = nn.Embedding(cfg.num_classes, 64) if cfg.num_classes else None
        extra = 64 if self.embed is not None else 0
        self.to_stats = nn.Linear(self.body.num_features + extra, 2 * cfg.latent_dim)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        h = self.body.features(x)
        if self.embed is not None:
            h = torch.cat([h, self.embed(labels)], dim=1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)


class VAEDecoder(Generator):
    """The DCGAN generator, carrying the fitted gmm prior (zero weights: not fitted yet, N(0, I) is used).
    A state without the prior's buffers (a run or model from before the option) loads as not fitted."""

    def __init__(self, cfg: VAEConfig):
        super().__init__(cfg)
        k, d = (cfg.prior_components, cfg.latent_dim) if cfg.latent_prior == "gmm" else (0, cfg.latent_dim)
        self.covariance = cfg.prior_covariance
        self.register_buffer("prior_weights", torch.zeros(k))
        self.register_buffer("prior_means", torch.zeros(k, d))
        self.register_buffer("prior_scale_tril", torch.zeros(k, d, d))

    def _load_from_state_dict(self, state, prefix, *args, **kwargs):
        for name in PRIOR_TENSORS:
            state.setdefault(prefix + name, getattr(self, name).detach().clone().zero_())
        super()._load_from_state_dict(state, prefix, *args, **kwargs)

    @torch.no_grad()
    def fit_prior(self, mu: torch.Tensor, seed: int = 0) -> None:
        """Fits the mixture (EM, scikit-learn, k-means initialised from `seed`) to latents (N, d)."""
        k = len(self.prior_weights)
        if k == 0:
            return
        from sklearn.mixture import GaussianMixture
        x = mu.detach().double().cpu().numpy()
        gm = GaussianMixture(min(k, len(x)), covariance_type=self.covariance, random_state=seed, reg_covar=1e-5,
                             max_iter=500).fit(x)
        covariances = gm.covariances_ if self.covariance == "full" else np.stack([np.diag(c) for c in gm.covariances_])
        n = len(gm.weights_)
        self.prior_weights.zero_()[:n] = torch.from_numpy(gm.weights_)
        self.prior_means.zero_()[:n] = torch.from_numpy(gm.means_)
        self.prior_scale_tril.zero_()[:n] = torch.from_numpy(np.linalg.cholesky(covariances))


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = VAEDecoder(cfg)

    @torch.no_grad()
    def prior_sample(self, images: torch.Tensor, labels: torch.Tensor | None = None, *, draws: int = 0,
                     seed: int = 0, batch_size: int = 512) -> torch.Tensor:
        """What the gmm prior is fitted to: the encoder's means (eval mode) of uint8 `images` (draws = 0),
        or `draws` samples per image from q(z | x) with a private RNG; converted a batch at a time."""
        was_training = self.encoder.training
        self.encoder.eval()
        rng = torch.Generator().manual_seed(seed)
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].float().div(127.5).sub(1.0)
            mu, logvar = self.encoder(x, *(() if labels is None else (labels[i:i + batch_size],)))
            if draws:
                eps = torch.randn(draws, *mu.shape, generator=rng).to(mu.device)
                mu = (mu + eps * (0.5 * logvar).exp()).flatten(0, 1)
            out.append(mu)
        self.encoder.train(was_training)
        return torch.cat(out)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        mu, logvar = self.encoder(x, labels)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decoder(z, labels), mu, logvar


# deployment receives the decoder: a generator z [+ labels] -> images like DCGAN's
register_model("vae", VAEConfig, tiny={"width": 8})(VAEDecoder)
