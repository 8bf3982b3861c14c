"""Image-to-image translation data: paired (Pix2Pix), unpaired (CycleGAN), semantic maps (SPADE).

A spec is a bundled name (``BUNDLED``) or one of the folder layouts users of those projects
already have:

* ``aligned:PATH`` - ``PATH/A`` and ``PATH/B`` matched by relative path without suffix
  (optionally ``PATH/A/train`` ...), or side-by-side AB images (A left half, B right half, as
  the pix2pix datasets ship) in ``PATH/<split>`` or ``PATH`` itself;
* ``unaligned:PATH`` - ``PATH/trainA``, ``PATH/trainB`` (holdout: ``testA``, ``testB``);
* ``semantic:PATH`` - ``PATH/labels`` (single-channel PNGs of class ids) and ``PATH/images``
  matched by relative path without suffix, optionally under ``PATH/<split>``; needs ``label_nc``.

Split ``train`` is the sub-folder ``train``; ``holdout`` is ``test``, or ``val`` when there is no
``test``. A folder without split sub-folders serves both splits (with a warning for holdout).
Every problem with the files - a missing partner, partners of different sizes, a class id out of
range, an unreadable file - is a ``UserError`` naming the file before training starts: a pair
cannot be skipped silently without shifting what the model learns.

The bundled sets are made from the ``photos`` dataset (same train/holdout split) by fixed,
documented transforms, so they cost no download and are identical on every machine:

* ``edges2photos`` (paired): Canny edges of the grey photo -> the photo in RGB;
* ``labels2photos`` (semantic): a colour/texture segmentation into ``LABEL_NC`` classes -> the photo;
* ``gray2color`` (paired): BT.601 luma -> the colour photo (colour photos only);
* ``photo2poster`` (unpaired): photos -> posterized *other* photos, with the true mapping
  (``posterize``) known, so a CycleGAN can be scored against ``truth``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genforge.data.builtin import _photo, photo_names
from genforge.data.color import LUMA
from genforge.data.degrade import imresize
from genforge.data.io import list_image_files, read_image
from genforge.errors import UserError

__all__ = [
    "BUNDLED",
    "LABEL_NC",
    "TranslationData",
    "TranslationPatches",
    "holdout_pairs",
    "posterize",
    "read_translation",
    "translation_datasets",
]

log = logging.getLogger(__name__)

LABEL_NC = 8  # classes of labels2photos
DONT_CARE = 255  # the class id SPADE/Cityscapes-style label maps use for "unlabelled"
SPLITS = ("train", "holdout")
KINDS = ("paired", "unpaired", "semantic")
_POSTER_LEVELS = np.array([32, 96, 160, 224], dtype=np.uint8)
_PREFIXES = ("aligned:", "unaligned:", "semantic:")
_LABEL_MODES = ("1", "L", "P", "I;16", "I;16L", "I;16B", "I")  # one value per pixel: the raw class id


@dataclass
class TranslationData:
    kind: str  # "paired", "unpaired" or "semantic"
    a: list[np.ndarray]  # paired/unpaired: H x W x C uint8 images of domain A; semantic: H x W uint8 class ids
    b: list[np.ndarray]  # H x W x C uint8 images of domain B; paired/semantic: b[i] is a[i]'s partner
    names_a: list[str]
    names_b: list[str]
    a_channels: int  # channels of A (semantic: label_nc)
    b_channels: int
    label_nc: int = 0  # semantic only
    truth: list[np.ndarray] | None = None  # unpaired with a known true mapping: the true B of each a[i]


# --------------------------------------------------------------------------- bundled sets


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
    return _POSTER_LEVELS[np.clip(np.floor(smooth / 64.0), 0, 3).astype(np.intp)]


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


# name -> kind, channels (A->B, for the listing), description and builder (split -> TranslationData
# of cached read-only arrays; read_translation hands out copies)
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


# --------------------------------------------------------------------------- user folders


def _uint8(image: np.ndarray) -> np.ndarray:
    """read_image output (1, 3 or 4 channels, 8 or 16 bits) -> 1 or 3 channel uint8; alpha is
    composited on black as ``load_dataset`` does."""
    if image.dtype == np.uint8 and image.shape[2] in (1, 3):
        return image
    x = image.astype(np.float64)
    if image.dtype == np.uint16:
        x /= 257.0
    if x.shape[2] == 4:
        x = x[:, :, :3] * (x[:, :, 3:] / 255.0)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _unify(images: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """A domain is RGB if any image in it is colour; its grey images are then repeated."""
    channels = 3 if any(i.shape[2] == 3 for i in images) else 1
    return [np.repeat(i, 3, axis=2) if i.shape[2] != channels else i for i in images], channels


def _read(path: Path) -> np.ndarray:
    return _uint8(read_image(path))  # a BadImageError (a UserError) names the file


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


def _need_dir(path: Path, spec: str, what: str = "folder") -> Path:
    if not path.is_dir():
        problem = "is not a directory" if path.exists() else "does not exist"
        raise UserError(f"dataset '{spec}': {what} '{path}' {problem}")
    return path


def _split_folder(root: Path, split: str, spec: str) -> Path:
    if split == "train":
        names = ("train",)
    else:
        names = ("test", "val")
    for name in names:
        if (root / name).is_dir():
            return root / name
    wanted = " or ".join(f"'{n}'" for n in names)
    raise UserError(f"dataset '{spec}': '{root}' has split sub-folders but no {wanted} for split '{split}'")


def _has_splits(root: Path) -> bool:
    return any((root / name).is_dir() for name in ("train", "test", "val"))


def _flat(root: Path, split: str, spec: str) -> Path:
    if split == "holdout":
        log.warning("dataset '%s': '%s' has no test/ or val/ sub-folder, so the holdout split is the "
                    "training images", spec, root)
    return root


def _by_stem(root: Path, spec: str) -> dict[str, Path]:
    """Image files under root keyed by relative path without suffix; two files that differ only
    in suffix cannot be matched to a partner, so they are an error."""
    files: dict[str, Path] = {}
    for path in list_image_files(root):
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in files:
            raise UserError(f"dataset '{spec}': '{files[key]}' and '{path}' have the same name; "
                            "partners are matched by name without suffix")
        files[key] = path
    return files


def _match(first: dict[str, Path], second: dict[str, Path], first_dir: Path, second_dir: Path,
           spec: str) -> list[str]:
    for have, other, other_dir in ((first, second, second_dir), (second, first, first_dir)):
        missing = sorted(set(have) - set(other))
        if missing:
            examples = ", ".join(f"'{have[k]}'" for k in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise UserError(f"dataset '{spec}': no partner in '{other_dir}' for {examples}{more} "
                            "(partners are matched by relative path without suffix)")
    if not first:
        raise UserError(f"dataset '{spec}': no images in '{first_dir}' or '{second_dir}'")
    return sorted(first)


def _read_aligned(root: Path, split: str, spec: str) -> TranslationData:
    _need_dir(root, spec)
    if (root / "A").is_dir() or (root / "B").is_dir():
        dir_a, dir_b = _need_dir(root / "A", spec), _need_dir(root / "B", spec)
        if _has_splits(dir_a):
            dir_a = _split_folder(dir_a, split, spec)
            dir_b = _need_dir(root / "B" / dir_a.name, spec)
        else:
            dir_a, dir_b = _flat(dir_a, split, spec), dir_b
        files_a, files_b = _by_stem(dir_a, spec), _by_stem(dir_b, spec)
        a, b, names_a, names_b = [], [], [], []
        for key in _match(files_a, files_b, dir_a, dir_b, spec):
            image_a, image_b = _read(files_a[key]), _read(files_b[key])
            if image_a.shape[:2] != image_b.shape[:2]:
                raise UserError(f"dataset '{spec}': '{files_a[key]}' is {_size(image_a)} but its partner "
                                f"'{files_b[key]}' is {_size(image_b)}; partners must have the same size")
            a.append(image_a)
            b.append(image_b)
            names_a.append(files_a[key].relative_to(dir_a).as_posix())
            names_b.append(files_b[key].relative_to(dir_b).as_posix())
    else:
        folder = _split_folder(root, split, spec) if _has_splits(root) else _flat(root, split, spec)
        files = list_image_files(folder)
        if not files:
            raise UserError(f"dataset '{spec}': no images in '{folder}'")
        a, b, names_a = [], [], []
        for path in files:
            image = _read(path)
            width = image.shape[1]
            if width % 2:
                raise UserError(f"dataset '{spec}': '{path}' is {_size(image)}; a side-by-side AB image "
                                "needs an even width (A is the left half, B the right half)")
            a.append(image[:, : width // 2])
            b.append(image[:, width // 2 :])
            names_a.append(path.relative_to(folder).as_posix())
        names_b = list(names_a)
    (a, a_channels), (b, b_channels) = _unify(a), _unify(b)
    return TranslationData("paired", a, b, names_a, names_b, a_channels, b_channels)


def _read_unaligned(root: Path, split: str, spec: str) -> TranslationData:
    _need_dir(root, spec)
    prefixes = ("train",) if split == "train" else ("test", "val")
    prefix = next((p for p in prefixes if (root / f"{p}A").is_dir() or (root / f"{p}B").is_dir()), prefixes[0])
    domains = []
    for side in "AB":
        folder = _need_dir(root / f"{prefix}{side}", spec)
        files = list_image_files(folder)
        if not files:
            raise UserError(f"dataset '{spec}': no images in '{folder}'")
        images, channels = _unify([_read(path) for path in files])
        domains.append((images, [p.relative_to(folder).as_posix() for p in files], channels))
    (a, names_a, a_channels), (b, names_b, b_channels) = domains
    return TranslationData("unpaired", a, b, names_a, names_b, a_channels, b_channels)


def _read_label_map(path: Path, label_nc: int) -> np.ndarray:
    """The raw class ids of a single-channel label PNG. Palette images are read as their
    indices: converting them to RGB, as a generic image reader does, would turn ids into colours."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            ids = np.asarray(ImageOps.exif_transpose(im)).astype(np.int64) if mode in _LABEL_MODES else None
    except Exception as exc:  # noqa: BLE001 - every decoder failure is the file's fault
        raise UserError(f"bad label map '{path}': {str(exc).strip() or type(exc).__name__}") from exc
    if ids is None:
        raise UserError(f"label map '{path}' is {mode}, not single-channel: labels must be class ids "
                        "(PNG mode L, P or I;16), not colour-coded images; convert colours to ids first")
    bad = np.unique(ids[((ids >= label_nc) | (ids < 0)) & (ids != DONT_CARE)])
    if bad.size:
        shown = ", ".join(str(int(i)) for i in bad[:5])
        raise UserError(f"label map '{path}' has class id {shown} >= label_nc {label_nc} "
                        f"(ids must be 0..{label_nc - 1}, or {DONT_CARE} for don't care)")
    return ids.astype(np.uint8)


def _read_semantic(root: Path, split: str, spec: str, label_nc: int | None) -> TranslationData:
    if label_nc is None:
        raise UserError(f"dataset '{spec}' needs label_nc, the number of classes in its label maps")
    if isinstance(label_nc, bool) or not isinstance(label_nc, (int, np.integer)) or not 1 <= label_nc <= DONT_CARE:
        raise UserError(f"label_nc must be an integer in 1..{DONT_CARE} ({DONT_CARE} is don't care), "
                        f"got {label_nc!r}")
    label_nc = int(label_nc)
    _need_dir(root, spec)
    if (root / "labels").is_dir() or (root / "images").is_dir():
        base = _flat(root, split, spec)
    else:
        base = _split_folder(root, split, spec) if _has_splits(root) else root
    dir_labels, dir_images = _need_dir(base / "labels", spec), _need_dir(base / "images", spec)
    files_labels, files_images = _by_stem(dir_labels, spec), _by_stem(dir_images, spec)
    labels, images, names_a, names_b = [], [], [], []
    for key in _match(files_labels, files_images, dir_labels, dir_images, spec):
        label_map, image = _read_label_map(files_labels[key], label_nc), _read(files_images[key])
        if label_map.shape != image.shape[:2]:
            raise UserError(f"dataset '{spec}': label map '{files_labels[key]}' is {_size(label_map)} but "
                            f"its image '{files_images[key]}' is {_size(image)}; they must have the same size")
        labels.append(label_map)
        images.append(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image)
        names_a.append(files_labels[key].relative_to(dir_labels).as_posix())
        names_b.append(files_images[key].relative_to(dir_images).as_posix())
    return TranslationData("semantic", labels, images, names_a, names_b, label_nc, 3, label_nc=label_nc)


def _copies(arrays: list[np.ndarray] | None) -> list[np.ndarray] | None:
    return None if arrays is None else [x.copy() for x in arrays]


def read_translation(spec: str, split: str = "train", *, label_nc: int | None = None) -> TranslationData:
    """A translation dataset at full resolution: a bundled name, ``aligned:PATH``,
    ``unaligned:PATH`` or ``semantic:PATH`` (which needs ``label_nc``; other kinds ignore it)."""
    if split not in SPLITS:
        raise UserError(f"translation datasets have splits {', '.join(SPLITS)}, not '{split}'")
    if spec in BUNDLED:
        if spec == "labels2photos" and label_nc not in (None, LABEL_NC):
            raise UserError(f"dataset '{spec}' has label_nc {LABEL_NC}, not {label_nc}")
        data = _bundled(spec, split)
        return dataclasses.replace(data, a=_copies(data.a), b=_copies(data.b), names_a=list(data.names_a),
                                   names_b=list(data.names_b), truth=_copies(data.truth))
    prefix = next((p for p in _PREFIXES if spec.startswith(p)), None)
    if prefix is None:
        valid = ", ".join([*BUNDLED, *(f"{p}PATH" for p in _PREFIXES)])
        raise UserError(f"unknown translation dataset '{spec}' (valid: {valid})")
    if not spec[len(prefix) :]:
        raise UserError(f"dataset '{spec}' needs a path, e.g. {prefix}/data/facades")
    root = Path(spec[len(prefix) :]).expanduser()
    if prefix == "aligned:":
        return _read_aligned(root, split, spec)
    if prefix == "unaligned:":
        return _read_unaligned(root, split, spec)
    return _read_semantic(root, split, spec, label_nc)


# --------------------------------------------------------------------------- training batches


def _chw(array: np.ndarray, channels: int) -> torch.Tensor:
    """H x W (x C) uint8 -> C x H x W uint8 with ``channels`` channels (grey repeated to RGB)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"translation images must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    if x.shape[0] == 1 and channels == 3:
        x = x.expand(3, -1, -1)
    if x.shape[0] != channels:
        raise ValueError(f"expected {channels} channels, got an image of shape {array.shape}")
    return x.contiguous()


def _downscale(x: torch.Tensor, factor: float, label: bool) -> torch.Tensor:
    """A smaller copy: the project bicubic for images, nearest for class ids (no invented ids)."""
    if label:
        size = [max(1, math.ceil(n * factor - 1e-9)) for n in x.shape[-2:]]
        return F.interpolate(x[None].float(), size=size, mode="nearest-exact")[0].to(torch.uint8)
    return imresize(x.float()[None], scale=factor)[0].round_().clamp_(0, 255).to(torch.uint8)


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(127.5).sub_(1.0)  # uint8 -> [-1, 1], the range tanh generators produce


class _Pool:
    """Same-size tensor groups (a paired example, or one image) at every jitter scale, sampled
    with probability proportional to area."""

    def __init__(self, items: list[tuple[torch.Tensor, ...]], labels: tuple[bool, ...], names: list[str],
                 patch_size: int, scale_jitter, what: str):
        self.items, self.labels = [], labels
        small = [name for item, name in zip(items, names) if min(item[0].shape[-2:]) < patch_size]
        if small:
            log.warning("%d %s smaller than patch_size %d skipped, e.g. '%s'", len(small), what, patch_size,
                        small[0])
        for item in items:
            for factor in scale_jitter:
                copy = item if factor == 1.0 else tuple(_downscale(x, factor, lab) for x, lab in zip(item, labels))
                if min(copy[0].shape[-2:]) >= patch_size:
                    self.items.append(copy)
        if not self.items:
            raise UserError(f"no {what} is at least {patch_size}x{patch_size} pixels (patch_size {patch_size})")
        areas = torch.tensor([float(x[0].shape[-1] * x[0].shape[-2]) for x in self.items], dtype=torch.float64)
        self.weights = areas / areas.sum()

    def draw(self, n: int, patch: int, flips: bool, g: torch.Generator) -> list[torch.Tensor]:
        """n crops of each member; one index, crop and flip per example, shared by its members."""
        idx = torch.multinomial(self.weights, n, replacement=True, generator=g).tolist()
        u = torch.rand(n, 3, generator=g, dtype=torch.float64).tolist()
        crops = [[] for _ in self.items[0]]
        for i, (ut, ul, uf) in zip(idx, u):
            item = self.items[i]
            height, width = item[0].shape[-2:]
            for _ in range(self.FLAT_RETRIES):
                top, left = int(ut * (height - patch + 1)), int(ul * (width - patch + 1))
                if not self._flat(item, top, left, patch):
                    break
                ut, ul = torch.rand(2, generator=g, dtype=torch.float64).tolist()
            for out, x in zip(crops, item):
                crop = x[..., top : top + patch, left : left + patch]
                out.append(crop.flip(-1) if flips and uf < 0.5 else crop)
        return [torch.stack(c) for c in crops]

    # A flat crop (a poster's sky, an edge map without edges) carries nothing to learn, and through a
    # chain of instance norms (each dividing by sqrt(var + eps) with var = 0) its gradient grows by
    # up to 1/sqrt(eps) per layer until it overflows; such crops are redrawn (a few times at most).
    FLAT_RETRIES = 8

    def _flat(self, item, top: int, left: int, patch: int) -> bool:
        for x, is_label in zip(item, self.labels):
            if not is_label:
                crop = x[..., top : top + patch, left : left + patch]
                if int(crop.max()) - int(crop.min()) <= 2:
                    return True
        return False


class TranslationPatches:
    """Random training crops of translation data.

    Like ``SRPatches``, the batch for step s is a pure function of (seed, s, rank), so a resumed
    run sees the same data. Paired and semantic examples share one crop and one horizontal flip
    between the partners; unpaired domains are drawn independently (own indices, crops, flips).
    Images smaller than ``patch_size`` are skipped with one warning; ``scale_jitter`` adds
    downscaled copies (bicubic for images, nearest for label maps).
    """

    def __init__(self, data: TranslationData, *, patch_size: int, batch_size: int, seed: int,
                 flips: bool = True, scale_jitter=(1.0,), device=torch.device("cpu"), rank: int = 0):
        if data.kind not in KINDS:
            raise ValueError(f"unknown translation data kind {data.kind!r}")
        self.kind, self.patch, self.batch_size = data.kind, patch_size, batch_size
        self.seed, self.rank, self.flips, self.device = seed, rank, flips, torch.device(device)
        jitter = tuple(float(f) for f in scale_jitter)
        if data.kind == "unpaired":
            self.pools = [
                _Pool([(_chw(x, data.a_channels),) for x in data.a], (False,), data.names_a, patch_size, jitter,
                      "domain A image(s)"),
                _Pool([(_chw(x, data.b_channels),) for x in data.b], (False,), data.names_b, patch_size, jitter,
                      "domain B image(s)"),
            ]
        else:
            semantic = data.kind == "semantic"
            a_channels = 1 if semantic else data.a_channels
            b_channels = 3 if semantic else data.b_channels
            items = [(_chw(a, a_channels), _chw(b, b_channels)) for a, b in zip(data.a, data.b)]
            self.pools = [_Pool(items, (semantic, False), data.names_a, patch_size, jitter, "pair(s)")]

    def batch(self, step: int) -> dict:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 97 + self.rank)
        n, p = self.batch_size, self.patch
        if self.kind == "unpaired":
            (a,), (b,) = (pool.draw(n, p, self.flips, g) for pool in self.pools)
        else:
            a, b = self.pools[0].draw(n, p, self.flips, g)
        out = {"b": _to_unit(b)}
        if self.kind == "semantic":
            out["label"] = a[:, 0].long()
        else:
            out["a"] = _to_unit(a)
        return {key: value.to(self.device) for key, value in out.items()}


def holdout_pairs(data: TranslationData, *, size: int, count: int | None = None, multiple: int = 1) -> list[dict]:
    """Fixed centre crops for validation, evaluation and the demo, one dict per image, batch of 1.

    The crop is square, side min(size, H, W) rounded down to ``multiple`` (what the network's
    down/up-sampling needs). Keys as in ``TranslationPatches.batch``; for unpaired data ``b`` is
    the true mapping of ``a`` when it is known (the score target) and absent otherwise.
    """
    if multiple < 1 or size < multiple:
        raise UserError(f"holdout crop size {size} must be at least the size multiple {multiple} (>= 1)")
    truth = data.truth if data.kind == "unpaired" else data.b
    semantic = data.kind == "semantic"
    out = []
    for i, a in enumerate(data.a[:count]):
        height, width = a.shape[:2]
        side = min(size, height, width)
        side -= side % multiple
        if side == 0:
            raise UserError(f"holdout image '{data.names_a[i]}' ({width}x{height}) is smaller than the "
                            f"size multiple {multiple} the network needs")
        top, left = (height - side) // 2, (width - side) // 2

        def crop(array: np.ndarray, channels: int) -> torch.Tensor:
            return _chw(array, channels)[None, :, top : top + side, left : left + side]

        pair = {}
        if semantic:
            pair["label"] = crop(a, 1)[:, 0].long()
        else:
            pair["a"] = _to_unit(crop(a, data.a_channels))
        if truth is not None:
            pair["b"] = _to_unit(crop(truth[i], 3 if semantic else data.b_channels))
        out.append(pair)
    return out
