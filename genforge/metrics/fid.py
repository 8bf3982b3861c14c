"""FID and KID with a pluggable feature network, computed by torchmetrics.

torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` accept
any ``nn.Module`` as ``feature=``. For such a module they

* pass the images to ``update`` straight through to it (no dtype conversion,
  ``normalize`` only matters for the built-in InceptionV3),
* take the feature size from an ``int`` attribute ``num_features`` (otherwise
  they probe the module with a random ``1 x 3 x 299 x 299`` uint8 image),
* FID accumulates sums in float64 but casts the result back to the dtype the
  module returned; KID keeps the features in the dtype they come in.

So the adapter :class:`ImageFeatures` takes genforge images (float, [-1, 1]),
runs the wrapped network and returns **float64** ``(B, D)`` features with a known
``num_features``: any network mapping [-1, 1] images to ``(B, D)`` works, and
both metrics then run entirely in float64.

For speed, :class:`FIDEvaluator` extracts the features of each image once and
hands them to both metrics through a pass-through module; the real set's
features are cached, so the training loop pays only for the generated images.

Feature networks are chosen by a spec string, see :func:`feature_network`:
``digits``, ``torchscript:PATH`` or ``inception:PATH``. Nothing is downloaded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from genforge.data.color import match_channels
from genforge.errors import UserError

__all__ = [
    "ImageFeatures",
    "FIDEvaluator",
    "feature_network",
    "extract_features",
    "frechet_distance",
    "fid_kid",
    "fid_kid_from_features",
    "FEATURE_SPECS",
]

FEATURE_SPECS = ("digits", "torchscript:PATH", "inception:PATH")


# --------------------------------------------------------------------------- adapters


class ImageFeatures(nn.Module):
    """Adapter: float images in [-1, 1] -> float64 ``(B, D)`` features of ``net``.

    Also usable on its own as ``feature=`` of torchmetrics' FID/KID once
    ``num_features`` is known (given, read from ``net.num_features``, or learnt
    at the first forward).

    Args:
        net: maps ``B x C x H x W`` float32 images in [-1, 1] to ``(B, D)`` (or
            ``(B, ...)``, flattened) features.
        num_features: ``D`` if known.
        channels: the channel count ``net`` wants (1 or 3), or ``None`` to pass
            images unchanged. Grey -> RGB repeats the channel, RGB -> grey uses luma.
        device: where ``net`` runs; images are moved there batch by batch.
        name: shown in ``repr`` and error messages.
    """

    def __init__(
        self,
        net: nn.Module,
        num_features: int | None = None,
        *,
        channels: int | None = None,
        device: str | torch.device | None = None,
        name: str = "custom",
    ) -> None:
        super().__init__()
        self.net = net
        self.channels = channels
        self.name = name
        if device is None:
            try:
                device = next(net.parameters()).device
            except StopIteration:
                device = "cpu"
        self.device = torch.device(device)
        if num_features is None:
            n = getattr(net, "num_features", None)
            if isinstance(n, Tensor):
                n = int(n.item())
            num_features = n if isinstance(n, int) else None
        if num_features is not None:
            self.num_features = int(num_features)
        self.net.eval()

    def train(self, mode: bool = True) -> "ImageFeatures":
        """A feature network is always in eval mode."""
        return super().train(False)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_features={getattr(self, 'num_features', None)}"

    def _prepare(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected B x C x H x W images, got shape {tuple(x.shape)}")
        if x.dtype == torch.uint8:  # e.g. torchmetrics' probe image, 0..255
            x = x.float() / 127.5 - 1.0
        x = x.to(self.device, torch.float32)
        return match_channels(x, self.channels)

    def forward(self, x: Tensor) -> Tensor:
        f = self.net(self._prepare(x))
        if isinstance(f, (tuple, list)):
            f = f[0]
        if not isinstance(f, Tensor) or f.dim() < 1 or f.shape[0] != x.shape[0]:
            shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
            raise UserError(
                f"feature network {self.name!r} must return (B, D) features for B={x.shape[0]} images, got {shape}"
            )
        f = f.reshape(f.shape[0], -1).double()
        n = getattr(self, "num_features", None)
        if n is None:
            self.num_features = int(f.shape[1])
        elif n != f.shape[1]:
            raise UserError(f"feature network {self.name!r} returned {f.shape[1]} features, expected {n}")
        return f


class _DigitsFeatures(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.features(x)


class _InceptionFromSigned(nn.Module):
    """[-1, 1] float RGB -> uint8 0..255, the input torch-fidelity's InceptionV3 demands."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.inception = inception

    def forward(self, x: Tensor) -> Tensor:
        u8 = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
        return self.inception(u8)


class _Given(nn.Module):
    """Pass-through 'feature network' for features that are already extracted."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, f: Tensor) -> Tensor:
        return f


def as_image_features(features: nn.Module | str, device: str | torch.device = "cpu") -> ImageFeatures:
    """Accept a spec string, an :class:`ImageFeatures` or any feature ``nn.Module``."""
    if isinstance(features, str):
        return feature_network(features, device)
    if isinstance(features, ImageFeatures):
        return features
    if isinstance(features, nn.Module):
        return ImageFeatures(features)
    raise TypeError(f"features must be an nn.Module or a spec string, got {type(features).__name__}")


# --------------------------------------------------------------------------- specs


def _existing_file(arg: str, kind: str) -> Path:
    if not arg.strip():
        raise UserError(f"feature network '{kind}:PATH' needs a path after the colon")
    path = Path(arg.strip()).expanduser()
    if not path.exists():
        raise UserError(f"feature network file not found: {path}")
    if not path.is_file():
        raise UserError(f"feature network path is not a file: {path}")
    return path


def feature_network(spec: str, device: str | torch.device = "cpu") -> ImageFeatures:
    """Build the feature network named by ``spec``, wrapped as :class:`ImageFeatures`.

    * ``digits``: the shipped :class:`~genforge.metrics.digits_net.DigitsNet`
      (its 128-d penultimate activations).
    * ``torchscript:PATH``: a TorchScript module (``torch.jit.save``) mapping
      ``B x C x H x W`` float images in [-1, 1] to ``(B, D)`` features. Loaded
      with ``torch.jit.load``, which does not unpickle arbitrary Python objects.
    * ``inception:PATH``: torch-fidelity's InceptionV3 (2048-d pool features) with
      weights from the local file ``PATH`` (e.g.
      ``weights-inception-2015-12-05-6726825d.pth``). Needs ``pip install torch-fidelity``.

    Raises:
        UserError: unknown spec, missing or unreadable file, missing torch-fidelity.
    """
    if not isinstance(spec, str):
        raise UserError(f"feature network spec must be a string, got {type(spec).__name__}")
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    dev = torch.device(device)

    if kind == "digits" and not arg.strip():
        from genforge.metrics.digits_net import load_digits_net

        net = load_digits_net(dev)
        return ImageFeatures(_DigitsFeatures(net), net.num_features, device=dev, name="digits")

    if kind == "torchscript" and sep:
        path = _existing_file(arg, kind)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
                module = torch.jit.load(str(path), map_location=dev)
        except Exception as exc:  # corrupt archive, not TorchScript, ...
            raise UserError(f"cannot load TorchScript feature network {path}: {exc}") from exc
        return ImageFeatures(module, device=dev, name=f"torchscript:{path}")

    if kind == "inception" and sep:
        path = _existing_file(arg, kind)
        try:
            import torch_fidelity  # noqa: F401
        except ImportError as exc:
            raise UserError(
                "inception features need the torch-fidelity package: pip install torch-fidelity"
            ) from exc
        from torchmetrics.image.fid import NoTrainInceptionV3

        try:
            inception = NoTrainInceptionV3(
                name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
            )
        except Exception as exc:  # wrong file, not a state dict, mismatched keys, ...
            raise UserError(f"cannot load InceptionV3 weights from {path}: {exc}") from exc
        inception = inception.to(dev)
        return ImageFeatures(_InceptionFromSigned(inception), 2048, channels=3, device=dev, name=f"inception:{path}")

    raise UserError(
        f"unknown feature network {spec!r}; expected one of: " + ", ".join(FEATURE_SPECS)
    )


# --------------------------------------------------------------------------- computation


def extract_features(images: Tensor, features: nn.Module | str, batch_size: int = 256) -> Tensor:
    """Float64 ``(N, D)`` features on CPU of ``N`` images (``B x C x H x W`` in [-1, 1])."""
    net = as_image_features(features)
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected an N x C x H x W image tensor, got {shape}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    with torch.inference_mode():
        chunks = [net(images[i : i + batch_size]).cpu() for i in range(0, len(images), batch_size)]
    if not chunks:
        return torch.zeros(0, getattr(net, "num_features", 0), dtype=torch.float64)
    return torch.cat(chunks)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two ``(N, D)`` sets (torchmetrics' FID math, float64)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    a, b = (t.detach().to("cpu", torch.float64) for t in (a, b))
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"sets must be (N, D) with the same D, got {tuple(a.shape)} and {tuple(b.shape)}")
    with torch.inference_mode():
        fid = FrechetInceptionDistance(feature=_Given(a.shape[1]), reset_real_features=True)
        fid.update(a, real=True)
        fid.update(b, real=False)
        return max(float(fid.compute()), 0.0)  # a squared distance: below 0 is round-off


def fid_kid_from_features(
    real_features: Tensor,
    fake_features: Tensor,
    *,
    kid_subsets: int = 50,
    kid_subset_size: int = 1000,
    kid_degree: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """FID and KID (torchmetrics, float64) between two ``(N, D)`` feature sets.

    KID's random subsets come from a private generator seeded by ``seed`` (the
    global RNG is left as it was); ``kid_subset_size`` is capped at the smaller set.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    real_f = real_features.detach().to("cpu", torch.float64)
    fake_f = fake_features.detach().to("cpu", torch.float64)
    if real_f.dim() != 2 or fake_f.dim() != 2 or real_f.shape[1] != fake_f.shape[1]:
        raise ValueError(
            f"feature sets must be (N, D) with the same D, got {tuple(real_f.shape)} and {tuple(fake_f.shape)}"
        )
    n_real, n_fake = len(real_f), len(fake_f)
    if min(n_real, n_fake) < 2:
        raise UserError(f"FID/KID need at least 2 real and 2 generated images, got {n_real} and {n_fake}")
    if kid_subsets < 1:
        raise ValueError("kid_subsets must be >= 1")
    subset = max(2, min(int(kid_subset_size), n_real, n_fake))
    dim = real_f.shape[1]

    with torch.inference_mode(), torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # KID warns on every construction that it keeps all features in memory: known, small here.
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        torch.manual_seed(seed)
        kid = KernelInceptionDistance(
            feature=_Given(dim), subsets=int(kid_subsets), subset_size=subset, degree=int(kid_degree)
        )
        kid.update(real_f, real=True)
        kid.update(fake_f, real=False)
        kid_mean, kid_std = kid.compute()

    return {"fid": frechet_distance(real_f, fake_f), "kid": float(kid_mean), "kid_std": float(kid_std)}


class FIDEvaluator:
    """FID/KID against a fixed real set whose features are computed once.

    >>> evaluator = FIDEvaluator(real_images, feature_network("digits"))   # doctest: +SKIP
    >>> evaluator(generated_images)                                       # doctest: +SKIP
    {'fid': 3.1, 'kid': 0.002, 'kid_std': 0.0004}
    """

    def __init__(
        self,
        real: Tensor,
        features: nn.Module | str,
        *,
        batch_size: int = 256,
        kid_subsets: int = 50,
        kid_subset_size: int = 1000,
        seed: int = 0,
    ) -> None:
        self.features = as_image_features(features)
        self.batch_size = int(batch_size)
        self.kid_subsets = int(kid_subsets)
        self.kid_subset_size = int(kid_subset_size)
        self.seed = int(seed)
        self.real_features = extract_features(real, self.features, self.batch_size)
        if len(self.real_features) < 2:
            raise UserError(f"FID/KID need at least 2 real images, got {len(self.real_features)}")

    @property
    def num_real(self) -> int:
        return len(self.real_features)

    def __call__(self, fake: Tensor) -> dict[str, float]:
        fake_features = extract_features(fake, self.features, self.batch_size)
        return fid_kid_from_features(
            self.real_features,
            fake_features,
            kid_subsets=self.kid_subsets,
            kid_subset_size=self.kid_subset_size,
            seed=self.seed,
        )


def fid_kid(
    real: Tensor,
    fake: Tensor,
    features: nn.Module | str,
    *,
    batch_size: int = 256,
    kid_subsets: int = 50,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """FID, KID and KID's std between two image sets (``N x C x H x W`` in [-1, 1]).

    ``features`` is a feature ``nn.Module`` (e.g. from :func:`feature_network`)
    or a spec string. Returns ``{"fid": float, "kid": float, "kid_std": float}``.
    """
    evaluator = FIDEvaluator(
        real, features, batch_size=batch_size, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed
    )
    return evaluator(fake)
