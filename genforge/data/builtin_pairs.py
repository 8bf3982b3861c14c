"""Bundled translation pair sets, generated from the ``photos`` dataset (same train/holdout split)
by fixed, documented transforms, so they cost no download and are identical on every machine:

* ``edges2photos`` (paired): Canny edges of the grey photo -> the photo in RGB;
* ``labels2photos`` (semantic): a colour/texture segmentation into ``LABEL_NC`` classes -> the photo;
* ``gray2color`` (paired): BT.601 luma -> the colour photo (colour photos only);
* ``photo2poster`` (unpaired): photos -> posterized *other* photos, with the true mapping
  (``posterize``) known, so a CycleGAN can be scored against ``truth``.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from genforge.data.builtin import _photo, photo_names
from genforge.data.color import LUMA
from genforge.data.pair_folders import SPLITS, TranslationData
from genforge.errors import UserError

__all__ = ["BUNDLED", "LABEL_NC", "POSTER_LEVELS", "POSTER_PREFIX", "bundled_pairs", "dataset_rows",
           "photo2poster_pairs", "posterize", "translation_datasets"]

LABEL_NC = 8  # classes of labels2photos
POSTER_LEVELS = np.array([32, 96, 160, 224], dtype=np.uint8)  # posterize's 4 levels


def posterize(image: np.ndarray) -> np.ndarray:
    """The known true mapping of ``photo2poster``: H x W x C uint8 -> the same shape.

    Each channel is smoothed by a Gaussian of sigma 1 (mirrored borders, in float) and then
    quantised into 4 levels: values in [0, 64) become 32, [64, 128) 96, [128, 192) 160 and
    [192, 255] 224. Smoothing first keeps the level boundaries from fraying into noise.
    """
    from scipy import ndimage

    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"posterize expects an H x W x C uint8 image, got {array.dtype} {array.shape}")
    sigma = (1.0, 1.0, 0.0)[: array.ndim]
    smooth = ndimage.gaussian_filter(array.astype(np.float64), sigma=sigma, mode="reflect")
    return POSTER_LEVELS[np.clip(np.floor(smooth / 64.0), 0, 3).astype(np.intp)]


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False  # cached: callers get copies
    return array


@functools.cache
def _rgb(name: str) -> np.ndarray:
    photo = _photo(name)
    return _frozen(np.repeat(photo, 3, axis=2) if photo.shape[2] == 1 else photo)


@functools.cache
def _grey(name: str) -> np.ndarray:
    """H x W x 1 BT.601 luma (a grey photo is its own luma)."""
    photo = _photo(name)
    if photo.shape[2] == 1:
        return _frozen(photo)
    return _frozen(np.rint(photo @ np.array(LUMA)).astype(np.uint8)[:, :, None])


def _is_colour(name: str) -> bool:
    return _photo(name).shape[2] == 3


@functools.cache
def _edges(name: str) -> np.ndarray:
    """White Canny edges (sigma 2) on black, dilated by one pixel (4-neighbourhood) so that thin
    edges survive crops and downscaled copies."""
    from scipy import ndimage
    from skimage.feature import canny

    edges = canny(_grey(name)[:, :, 0] / 255.0, sigma=2.0)
    edges = ndimage.binary_dilation(edges)
    return _frozen(edges.astype(np.uint8)[:, :, None] * 255)


_FEATURE_SMOOTHING = 2.0  # Gaussian sigma on the features: regions, not pixels, get a class
_TEXTURE_WINDOW = 7
_TEXTURE_WEIGHT = 1.0  # local std of L: tells flat sky from grass of the same colour
_SAMPLES_PER_IMAGE = 4000
_MODE_RADIUS = 3


def _segment_features(name: str) -> np.ndarray:
    """H*W x 4 float32 per-pixel features: CIE Lab and a local texture energy, smoothed.

    L is stretched per image (1st..99th percentile to 0..100) so that a low-contrast photo (the
    moon) still splits into several regions instead of falling into one luminance class."""
    from scipy import ndimage
    from skimage.color import rgb2lab

    lab = rgb2lab(_rgb(name)).astype(np.float32)
    lightness = lab[:, :, 0]
    low, high = np.percentile(lightness, (1, 99))
    lightness = np.clip((lightness - low) / max(high - low, 1e-3), 0, 1) * 100
    lab[:, :, 0] = lightness
    size = _TEXTURE_WINDOW
    mean = ndimage.uniform_filter(lightness, size, mode="reflect")
    variance = ndimage.uniform_filter(lightness * lightness, size, mode="reflect") - mean * mean
    texture = np.sqrt(np.clip(variance, 0, None)) * _TEXTURE_WEIGHT
    features = np.concatenate([lab, texture[:, :, None]], axis=2)
    features = ndimage.gaussian_filter(features, sigma=(_FEATURE_SMOOTHING, _FEATURE_SMOOTHING, 0))
    return features.reshape(-1, features.shape[2])


@functools.cache
def _segmentation() -> dict[str, np.ndarray]:
    """H x W class ids in 0..LABEL_NC-1 for every photo.

    K-means is fitted once, on a fixed subsample of train pixels (single-threaded: OpenMP
    threads fighting other jobs made it 50x slower, and one thread keeps it bit-reproducible);
    each pixel gets its nearest centre, classes are ordered by the centres' luminance (dark =
    0) so ids do not depend on k-means' arbitrary cluster order, and a mode filter removes
    speckle so the maps look like drawn semantic maps.
    """
    from skimage.filters.rank import modal
    from skimage.morphology import disk
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    labels = {}
    with threadpool_limits(1):
        features = {name: _segment_features(name) for name in photo_names("train")}
        samples = [f[rng.choice(len(f), _SAMPLES_PER_IMAGE, replace=False)] for f in features.values()]
        kmeans = KMeans(n_clusters=LABEL_NC, n_init=4, random_state=0).fit(np.concatenate(samples))
        centres = kmeans.cluster_centers_.astype(np.float32)
        class_of = np.empty(LABEL_NC, dtype=np.uint8)
        class_of[np.argsort(centres[:, 0], kind="stable")] = np.arange(LABEL_NC, dtype=np.uint8)
        for name in photo_names("all"):
            f = features.pop(name) if name in features else _segment_features(name)
            distance = (centres**2).sum(axis=1)[None, :] - 2.0 * (f @ centres.T)  # |f|^2: same for all
            ids = class_of[distance.argmin(axis=1)].reshape(_photo(name).shape[:2])
            labels[name] = _frozen(modal(ids, disk(_MODE_RADIUS)))
    return labels


def _labels(name: str) -> np.ndarray:
    return _segmentation()[name]


def _poster_halves() -> tuple[list[str], list[str]]:
    """Train photos alternately to domain A and domain B: two disjoint halves, each with both
    colour and grey photos (a first-half/second-half cut would give B mostly grey textures)."""
    names = photo_names("train")
    return names[0::2], names[1::2]


@functools.cache
def _poster(name: str) -> np.ndarray:
    return _frozen(posterize(_rgb(name)))


def _build_edges2photos(split: str) -> TranslationData:
    names = photo_names(split)
    return TranslationData("paired", [_edges(n) for n in names], [_rgb(n) for n in names],
                           list(names), list(names), 1, 3)


def _build_labels2photos(split: str) -> TranslationData:
    names = photo_names(split)
    return TranslationData("semantic", [_labels(n) for n in names], [_rgb(n) for n in names],
                           list(names), list(names), LABEL_NC, 3, label_nc=LABEL_NC)


def _build_gray2color(split: str) -> TranslationData:
    names = [n for n in photo_names(split) if _is_colour(n)]
    return TranslationData("paired", [_grey(n) for n in names], [_rgb(n) for n in names],
                           list(names), list(names), 1, 3)


def _build_photo2poster(split: str) -> TranslationData:
    names_a, names_b = _poster_halves() if split == "train" else (photo_names(split),) * 2
    return TranslationData("unpaired", [_rgb(n) for n in names_a], [_poster(n) for n in names_b],
                           list(names_a), list(names_b), 3, 3, truth=[_poster(n) for n in names_a])


POSTER_PREFIX = "photo2poster:"


@functools.lru_cache(maxsize=2)
def _photo2poster_with_bsds500(spec: str, split: str) -> TranslationData:
    """``photo2poster:PATH``: photo2poster with the 400 BSDS500 train photos at PATH added to its
    training domains (alternately to A and to B, as the bundled photos are), so a CycleGAN sees
    205 photos and 205 posters of other photos, not 5 and 5; the holdout is the bundled one, so
    scores compare with a model trained on the bundled set alone."""
    from genforge.data import bsds500

    bundled = _bundled("photo2poster", split)
    if not spec[len(POSTER_PREFIX):]:
        example = POSTER_PREFIX + bsds500.EXAMPLE[len(bsds500.PREFIX):]
        raise UserError(f"dataset '{spec}' needs the BSDS500 folder, e.g. {example}")
    if split != "train":
        return bundled
    source = bsds500.PREFIX + spec[len(POSTER_PREFIX):]
    try:
        photos, ids = bsds500.read_photos(source, "train")
    except UserError as exc:  # named as the user wrote it
        raise UserError(str(exc).replace(f"dataset '{source}'", f"dataset '{spec}'")) from None
    photos_a, photos_b = [_frozen(p) for p in photos[0::2]], [_frozen(posterize(p)) for p in photos[1::2]]
    return TranslationData("unpaired", [*bundled.a, *photos_a], [*bundled.b, *photos_b],
                           [*bundled.names_a, *(f"{i}.jpg" for i in ids[0::2])],
                           [*bundled.names_b, *(f"{i}.jpg" for i in ids[1::2])], 3, 3,
                           truth=[*bundled.truth, *(_frozen(posterize(p)) for p in photos_a)])


# name -> kind, channels (A->B, for the listing), description and builder (split -> TranslationData
# of cached read-only arrays; bundled_pairs hands out copies)
BUNDLED: dict[str, dict] = {
    "edges2photos": {
        "kind": "paired",
        "channels": "1->3",
        "description": "Canny edge maps (sigma 2, 1 channel) -> photos (RGB)",
        "build": _build_edges2photos,
    },
    "labels2photos": {
        "kind": "semantic",
        "channels": f"{LABEL_NC} ids->3",
        "description": f"colour/texture segmentation maps ({LABEL_NC} classes, by luminance) -> photos",
        "build": _build_labels2photos,
    },
    "gray2color": {
        "kind": "paired",
        "channels": "1->3",
        "description": "BT.601 grey -> colour photos (colour photos only)",
        "build": _build_gray2color,
    },
    "photo2poster": {
        "kind": "unpaired",
        "channels": "3->3",
        "description": "photos -> posterized other photos (4 levels); true mapping known for scoring",
        "build": _build_photo2poster,
    },
}


@functools.cache
def _bundled(name: str, split: str) -> TranslationData:
    return BUNDLED[name]["build"](split)


def _copies(arrays: list[np.ndarray] | None) -> list[np.ndarray] | None:
    return None if arrays is None else [x.copy() for x in arrays]


def _fresh(data: TranslationData) -> TranslationData:
    """A cached set as fresh copies (the cache stays untouched by callers' edits)."""
    return dataclasses.replace(data, a=_copies(data.a), b=_copies(data.b), names_a=list(data.names_a),
                               names_b=list(data.names_b), truth=_copies(data.truth))


def bundled_pairs(name: str, split: str, *, label_nc: int | None = None) -> TranslationData:
    """A bundled set's split as fresh copies."""
    if name == "labels2photos" and label_nc not in (None, LABEL_NC):
        raise UserError(f"dataset '{name}' has label_nc {LABEL_NC}, not {label_nc}")
    return _fresh(_bundled(name, split))


def photo2poster_pairs(spec: str, split: str) -> TranslationData:
    """``photo2poster:PATH``'s split as fresh copies (see _photo2poster_with_bsds500)."""
    return _fresh(_photo2poster_with_bsds500(spec, split))


def _counts(name: str, split: str) -> tuple[int, list[tuple[int, ...]]]:
    """Examples (pairs, or A images) and photo shapes of a bundled split, without generating it."""
    if name == "gray2color":
        names = [n for n in photo_names(split) if _is_colour(n)]
        return len(names), [_photo(n).shape for n in names]
    names = photo_names(split)
    examples = len(_poster_halves()[0]) if name == "photo2poster" and split == "train" else len(names)
    return examples, [_photo(n).shape for n in names]


def translation_datasets() -> list[dict]:
    """One row per bundled set: name, kind, train and holdout example counts (pairs, or domain-A
    images for unpaired sets), description. Reads the photos but generates nothing."""
    rows = []
    for name, entry in BUNDLED.items():
        train, _ = _counts(name, "train")
        holdout, _ = _counts(name, "holdout")
        rows.append({"name": name, "kind": entry["kind"], "train": train, "holdout": holdout,
                     "description": entry["description"]})
    return rows


def dataset_rows() -> list[dict]:
    """The bundled sets in the row format of ``genforge.data.list_datasets``."""
    rows = []
    for row in translation_datasets():
        shapes = _counts(row["name"], "train")[1] + _counts(row["name"], "holdout")[1]
        sides = sorted({s[:2] for s in shapes}, key=lambda s: (s[0] * s[1], s))
        sizes = [f"{s[0]}x{s[1]}" for s in (sides[0], sides[-1])]
        rows.append({
            "name": row["name"],
            "images": row["train"] + row["holdout"],
            "size": sizes[0] if sizes[0] == sizes[1] else "..".join(sizes),
            "channels": BUNDLED[row["name"]]["channels"],
            "labels": False,  # class labels for conditional generation: none; label maps are the A side
            "classes": LABEL_NC if row["kind"] == "semantic" else 0,
            "splits": list(SPLITS),
            "kind": row["kind"],
            "description": f"{row['kind']} translation: {row['description']}",
        })
    return rows
