"""Generation metrics that see what FID in a classifier's features can miss.

* :func:`precision_recall`: improved precision and recall (Kynkaanniemi et al., NeurIPS 2019).
  Each set's manifold is the union of balls around its points, each ball reaching that point's
  k-th nearest neighbour in the same set (k=3 by default). Precision is the share of generated
  points inside the real manifold (are the samples realistic?), recall the share of real points
  inside the generated manifold (is every kind of real image produced?). A generator that drops
  classes keeps its precision and loses recall; one that draws off the data loses precision.
* :func:`pixel_frechet_distance`: the Frechet distance of the images themselves, resized to the
  data's native size (8x8 for the digits) and projected on the leading principal components of
  the real images (20 by default), pixel values in [0, 1]. Nothing in it is trained to ignore
  anything: blur moves variance out of the fine components and low contrast shrinks all of them
  and shifts the mean, and both raise it, while a classifier's features (what FID sees on the
  digits) are built to be invariant to exactly such changes.
* :func:`generation_scores`: every metric above plus FID/KID for one real and one generated
  set, each beside its real-vs-real reference (two random halves of the real set), the
  floor a perfect generator would reach with that many samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genforge.errors import UserError
from genforge.metrics.fid import extract_features, fid_kid_from_features, frechet_distance

__all__ = [
    "FEATURE_METRICS",
    "GENERATION_METRICS",
    "generation_scores",
    "native_size",
    "pca_projections",
    "pixel_frechet_distance",
    "precision_recall",
]

FEATURE_METRICS = ("fid", "kid", "precision", "recall")  # the metrics that need a feature network
GENERATION_METRICS = (*FEATURE_METRICS, "pixel_fd")


# --------------------------------------------------------------------------- precision and recall


def _as_points(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be an (N, D) tensor, got {shape}")
    return x.detach().to("cpu", torch.float64)


def _knn_radii(x: Tensor, k: int, chunk: int) -> Tensor:
    """Distance of every point of ``x`` to its k-th nearest neighbour in ``x`` (itself excluded)."""
    rows = [torch.cdist(x[i : i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), chunk)]
    return torch.cat(rows)


def _inside(points: Tensor, centres: Tensor, radii: Tensor, chunk: int) -> Tensor:
    """For each point: whether it lies in at least one ball (``centres``, ``radii``)."""
    hits = [(torch.cdist(points[i : i + chunk], centres) <= radii).any(dim=1) for i in range(0, len(points), chunk)]
    return torch.cat(hits)


def precision_recall(real_features: Tensor, fake_features: Tensor, *, k: int = 3, chunk: int = 1024) -> dict:
    """Improved precision and recall of ``fake_features`` against ``real_features`` (both ``(N, D)``).

    Returns ``{"precision": float, "recall": float}``, each in [0, 1]; a set against itself
    scores 1 and 1. Deterministic (exact distances in float64, no sampling).
    """
    real, fake = _as_points(real_features, "real_features"), _as_points(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sets differ in size: {real.shape[1]} and {fake.shape[1]}")
    if k < 1:
        raise ValueError("k must be >= 1")
    if min(len(real), len(fake)) <= k:
        raise UserError(f"precision/recall with k={k} need more than {k} real and generated images, "
                        f"got {len(real)} and {len(fake)}")
    precision = _inside(fake, real, _knn_radii(real, k, chunk), chunk).double().mean()
    recall = _inside(real, fake, _knn_radii(fake, k, chunk), chunk).double().mean()
    return {"precision": float(precision), "recall": float(recall)}


# --------------------------------------------------------------------------- pixel-space Frechet distance


def _pixels(images: Tensor, size: int) -> Tensor:
    """``N x C x H x W`` images in [-1, 1] -> ``(N, C * size * size)`` float64 values in [0, 1]."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected N x C x H x W images, got {shape}")
    x = images.detach().to("cpu", torch.float64).clamp(-1.0, 1.0).add(1.0).div(2.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="area")  # a box average: sharpens nothing
    return x.reshape(len(x), -1)


def pca_projections(real: Tensor, fake: Tensor, components: int) -> tuple[Tensor, Tensor]:
    """Both ``(N, D)`` sets projected on the ``components`` leading principal axes of ``real``."""
    mean = real.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(real - mean, full_matrices=False)
    axes = vh[: min(int(components), vh.shape[0])].T
    return (real - mean) @ axes, (fake - mean) @ axes


def pixel_frechet_distance(real: Tensor, fake: Tensor, *, size: int = 8, components: int = 20) -> float:
    """Frechet distance between ``real`` and ``fake`` images in a PCA space of their pixels.

    Both sets (``N x C x H x W`` in [-1, 1]) are resized to ``size x size`` by box averaging,
    taken as pixel values in [0, 1], and projected on the ``components`` leading principal
    axes of the real set (at most ``N_real - 1``); the result is the Frechet distance of the
    two projected sets. Deterministic.
    """
    if size < 1 or components < 1:
        raise ValueError("size and components must be >= 1")
    a, b = _pixels(real, int(size)), _pixels(fake, int(size))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"real and generated images differ in channels: {tuple(real.shape)} and {tuple(fake.shape)}")
    if min(len(a), len(b)) < 2:
        raise UserError(f"pixel FD needs at least 2 real and 2 generated images, got {len(a)} and {len(b)}")
    pa, pb = pca_projections(a, b, min(int(components), len(a) - 1))
    return frechet_distance(pa, pb)


def native_size(dataset: str, split: str, image_size: int) -> int:
    """The side pixel FD compares at: a bundled dataset's smallest native side, at most ``image_size``.

    Data read from folders has no fixed native size: there it is ``image_size``.
    """
    from genforge.data.builtin import DATASETS

    if dataset not in DATASETS:
        return int(image_size)
    arrays = DATASETS[dataset].read(split)[0]
    return min(int(image_size), *(min(a.shape[:2]) for a in arrays))


# --------------------------------------------------------------------------- all together


def _both_ways(score, real: Tensor, fake: Tensor, first: Tensor, second: Tensor) -> tuple[dict, dict]:
    """``score(reference, other) -> dict`` of the model and of the real-vs-real floor, like for like.

    Model: the mean of score(real half A, generated half 1) and score(real half B, generated half 2);
    floor: the mean of score(A, B) and score(B, A). Both sides thus compare equal-sized sets with the
    same reference sets, so a perfect generator scores the floor (up to sampling noise).
    """
    m = min(len(first), len(fake) // 2)
    a, b = real[first], real[second]
    runs = [score(a, fake[:m]), score(b, fake[m : 2 * m])], [score(a, b), score(b, a)]
    return tuple({key: (x[key] + y[key]) / 2 for key in x} for x, y in runs)


def generation_scores(
    real: Tensor,
    fake: Tensor,
    metrics: list[str] | tuple[str, ...],
    *,
    features: nn.Module | None = None,
    size: int | None = None,
    seed: int = 0,
    k: int = 3,
    components: int = 20,
) -> dict:
    """The ``metrics`` (of :data:`GENERATION_METRICS`) of ``fake`` against ``real``, each beside
    ``<name>_real_halves``: the same metric between two random halves of ``real`` (drawn by ``seed``).

    FID/KID compare all of ``real`` with all of ``fake`` (the halves: a floor at half the sample
    size). Precision, recall and pixel FD depend on the set sizes more, so they are scored like for
    like (see :func:`_both_ways`): each real half against as many generated images, both ways.
    ``features`` (an :class:`~genforge.metrics.fid.ImageFeatures` or any feature module) is needed
    for the :data:`FEATURE_METRICS`; each image's features are extracted once. ``size``: the side
    pixel FD resizes to (default: the images' own). ``kid_std`` comes with ``kid``.
    """
    unknown = [m for m in metrics if m not in GENERATION_METRICS]
    if unknown:
        raise ValueError(f"unknown generation metric {', '.join(unknown)}")
    perm = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
    half = len(real) // 2
    first, second = perm[:half], perm[half : 2 * half]
    out: dict = {}

    def put(scores: dict, reference: dict) -> None:
        for name in scores:
            if name in metrics:
                out[name], out[f"{name}_real_halves"] = scores[name], reference[name]

    if set(FEATURE_METRICS) & set(metrics):
        if features is None:
            raise UserError(f"{', '.join(m for m in metrics if m in FEATURE_METRICS)} need a feature network")
        real_f, fake_f = extract_features(real, features), extract_features(fake, features)
        if {"fid", "kid"} & set(metrics):
            scores = fid_kid_from_features(real_f, fake_f, seed=seed)
            put(scores, fid_kid_from_features(real_f[first], real_f[second], seed=seed))
            if "kid" in metrics:
                out["kid_std"] = scores["kid_std"]
        if {"precision", "recall"} & set(metrics):
            put(*_both_ways(lambda r, f: precision_recall(r, f, k=k), real_f, fake_f, first, second))
    if "pixel_fd" in metrics:
        side = int(size or real.shape[-1])

        def pixel_fd(r: Tensor, f: Tensor) -> dict:
            return {"pixel_fd": pixel_frechet_distance(r, f, size=side, components=components)}

        put(*_both_ways(pixel_fd, real, fake, first, second))
    return out
