"""``bsds500:PATH``: the Berkeley Segmentation Data Set 500 (Arbelaez, Maire, Fowlkes and Malik,
TPAMI 2011) in its published layout, for every family that reads photos.

    PATH/data/images/{train,val,test}/<id>.jpg        (PATH may also be the data/ folder itself)
    PATH/data/groundTruth/{train,val,test}/<id>.mat   groundTruth{k}.Segmentation / .Boundaries

Splits as the SR literature uses them: ``train`` is the train and test folders (400 photos),
``val`` is BSD100, the standard super-resolution test set (never train on it), ``all`` is the
500; ``train-only`` and ``test`` name the folders alone. ``read_annotations`` gives each photo's
human contours (the mean of the annotators' boundary maps) and one annotator's region map, for
the edges->photo and regions->photo translation tasks.

Photos are decoded once per process and kept (uint8, ~0.46 MB each: 230 MB for all 500), so
several readers in one run (training patches, validation crops) share one decode.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from genforge.data.io import read_image
from genforge.errors import BadImageError, UserError

PREFIX = "bsds500:"
SPLITS = {"train": ("train", "test"), "val": ("val",), "all": ("train", "val", "test"),
          "train-only": ("train",), "test": ("test",)}
EXAMPLE = "bsds500:../shared/datasets/BSDS500"


def data_root(spec: str) -> Path:
    """The ``data/`` folder of a ``bsds500:PATH`` spec, or a UserError saying what is missing."""
    text = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    if not text:
        raise UserError(f"dataset '{spec}' needs a path, e.g. {EXAMPLE}")
    root = Path(text).expanduser()
    for candidate in (root / "data", root):
        if (candidate / "images").is_dir():
            return candidate.resolve()
    if not root.exists():
        raise UserError(f"dataset '{spec}': '{root}' does not exist (expected the BSDS500 folder, e.g. {EXAMPLE})")
    raise UserError(f"dataset '{spec}': '{root}' has no data/images/ folder (the BSDS500 layout: "
                    "data/images/{train,val,test}/*.jpg)")


def _folders(spec: str, split: str) -> tuple[Path, tuple[str, ...]]:
    if split not in SPLITS:
        raise UserError(f"dataset '{spec}' has no split '{split}' (splits: {', '.join(SPLITS)})")
    return data_root(spec), SPLITS[split]


def photo_paths(spec: str, split: str = "train") -> list[Path]:
    """The split's JPEGs, sorted by folder then numeric id (a fixed order on every machine)."""
    root, folders = _folders(spec, split)
    paths = []
    for folder in folders:
        found = sorted((root / "images" / folder).glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
        paths.extend(found)
    if not paths:
        raise UserError(f"dataset '{spec}' split '{split}' has no photos under {root / 'images'}")
    return paths


@functools.lru_cache(maxsize=600)
def _photo(path: Path) -> np.ndarray:
    image = read_image(path)
    image.setflags(write=False)  # shared between callers: each gets a copy
    return image


def read_photos(spec: str, split: str = "train") -> tuple[list[np.ndarray], list[str]]:
    """H x W x 3 uint8 photos and their ids; an unreadable file is an error naming it (a published
    benchmark with a photo missing would give numbers nobody can compare)."""
    paths = photo_paths(spec, split)
    try:
        images = [_photo(p).copy() for p in paths]
    except BadImageError as exc:
        raise UserError(f"dataset '{spec}': {exc}") from None
    return images, [p.stem for p in paths]


def read_annotations(spec: str, split: str = "train") -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(contours, regions, ids): contours H x W float32 in [0, 1], the share of annotators who drew
    a boundary at each pixel; regions H x W int32, the first annotator's segment ids (1..n, per
    image, unlabelled)."""
    from scipy.io import loadmat

    root, _ = _folders(spec, split)
    contours, regions, ids = [], [], []
    for photo in photo_paths(spec, split):
        mat = root / "groundTruth" / photo.parent.name / f"{photo.stem}.mat"
        try:
            truth = loadmat(mat)["groundTruth"][0]
            boundaries = [np.asarray(t["Boundaries"][0, 0], np.float32) for t in truth]
            segmentation = np.asarray(truth[0]["Segmentation"][0, 0], np.int32)
        except (OSError, KeyError, IndexError, ValueError) as exc:
            raise UserError(f"dataset '{spec}': annotation '{mat}' cannot be read ({exc})") from None
        contours.append(np.mean(boundaries, axis=0))
        regions.append(segmentation)
        ids.append(photo.stem)
    return contours, regions, ids


TRANSLATION_SPLITS = {"train": "train", "holdout": "val"}  # translation's split names -> BSDS500's


def contour_pairs(spec: str, split: str = "train"):
    """``bsds500:PATH`` as a paired translation set: human contours -> photo, the real edges2photos.

    A is the annotators' mean boundary map as white-on-black uint8 (255 where every annotator drew
    a contour), grey-dilated by one pixel like the bundled edges2photos' Canny maps, so a model
    trained here also reads those; B is the photo. ``train`` is train + test (400 pairs), ``holdout``
    is val (BSD100), the split the SR models are scored on too."""
    from scipy import ndimage

    from genforge.data.pair_folders import TranslationData

    contours, _, ids = read_annotations(spec, TRANSLATION_SPLITS[split])
    photos, _ = read_photos(spec, TRANSLATION_SPLITS[split])
    cross = ndimage.generate_binary_structure(2, 1)
    edges = [np.rint(255 * ndimage.grey_dilation(c, footprint=cross)).astype(np.uint8)[:, :, None] for c in contours]
    return TranslationData("paired", edges, photos, [f"{i}.mat" for i in ids], [f"{i}.jpg" for i in ids], 1, 3)
