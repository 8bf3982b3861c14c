"""Datasets bundled with scikit-learn and scikit-image, so demos and tests never need a network.

``photos`` holds only the natural photographs that ship inside the two wheels. Several
``skimage.data`` functions download their file with pooch on first use; none of those is used.
Left out on purpose: ``cat`` (the same picture as ``chelsea``), ``clock`` (deliberately motion
blurred), ``hubble_deep_field`` (false-colour telescope composite), ``retina`` and
``microaneurysms`` (medical), ``cell`` and ``immunohistochemistry`` (microscopy), ``text`` and
``page`` (text), ``horse`` (binary mask), ``logo``, ``colorwheel``, ``checkerboard`` and the
phantom (synthetic). Photos keep their full resolution: super-resolution crops them itself.

The photos holdout split is fixed by name (``HOLDOUT_PHOTOS``) so that super-resolution scores
are comparable between runs and machines.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genforge.errors import UserError

Images = tuple[list[np.ndarray], np.ndarray | None, list[str]]  # arrays, labels, class names


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    description: str
    labelled: bool
    splits: tuple[str, ...]
    _read: Callable[[str], Images]

    def read(self, split: str = "train") -> Images:
        """Full-resolution H x W x C uint8 arrays, int64 labels (or None) and class names."""
        if split not in self.splits:
            raise UserError(
                f"dataset '{self.name}' has no split '{split}' (splits: {', '.join(self.splits)})"
            )
        images, labels, names = self._read(split)
        return [image.copy() for image in images], labels, list(names)

    def info(self) -> dict:
        """The row ``genforge datasets`` prints; computed from the data so it cannot go stale."""
        images, labels, names = self.read("all")
        shapes = sorted({image.shape for image in images}, key=lambda s: (s[0] * s[1], s))
        sizes = [f"{s[0]}x{s[1]}" for s in (shapes[0], shapes[-1])]
        return {
            "name": self.name,
            "images": len(images),
            "size": sizes[0] if sizes[0] == sizes[1] else "..".join(sizes),
            "channels": ",".join(str(c) for c in sorted({s[2] for s in shapes})),
            "labels": self.labelled,
            "classes": len(names),
            "splits": list(self.splits),
            "description": self.description,
        }


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    # Importing sklearn costs ~0.7 s, ten times the load itself, and digits is the demo and
    # test dataset: read its CSV straight from the installed package when it is where
    # load_digits() keeps it, else fall back to the public API.
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if csv.is_file():
        table = np.loadtxt(csv, delimiter=",")
        values, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        values, target = bunch.images, bunch.target
    pixels = np.rint(values * (255.0 / 16.0)).astype(np.uint8)[:, :, :, None]
    return pixels, target.astype(np.int64)


def _read_digits(split: str) -> Images:
    pixels, labels = _digits()
    return list(pixels), labels.copy(), [str(d) for d in range(10)]


@functools.cache
def _faces() -> np.ndarray:
    import skimage.data

    faces = skimage.data.lfw_subset()[:100]  # the second hundred are non-face patches
    return np.rint(faces * 255.0).astype(np.uint8)[:, :, :, None]


def _read_faces(split: str) -> Images:
    return list(_faces()), None, []


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


def _motorcycle() -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[0]  # left view; the right one is near-identical


# name -> loader; all natural photographs, colour ones H x W x 3, grey ones H x W.
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "brick": _skimage("brick"),
    "camera": _skimage("camera"),
    "chelsea": _skimage("chelsea"),
    "china": _sklearn("china.jpg"),
    "coffee": _skimage("coffee"),
    "coins": _skimage("coins"),
    "flower": _sklearn("flower.jpg"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "moon": _skimage("moon"),
    "motorcycle": _motorcycle,
    "rocket": _skimage("rocket"),
}
# About 20%: fine colour texture (cat fur), a colour close-up, and a grey photo.
HOLDOUT_PHOTOS = ("chelsea", "coins", "flower")


@functools.cache
def _photo(name: str) -> np.ndarray:
    image = np.asarray(PHOTOS[name](), dtype=np.uint8)
    return image[:, :, None] if image.ndim == 2 else image


def photo_names(split: str = "all") -> list[str]:
    if split == "holdout":
        return list(HOLDOUT_PHOTOS)
    return [n for n in PHOTOS if split == "all" or n not in HOLDOUT_PHOTOS]


def _read_photos(split: str) -> Images:
    return [_photo(name) for name in photo_names(split)], None, []


DATASETS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in (
        BuiltinDataset(
            "digits",
            "scikit-learn handwritten digits 0-9 (all 1,797 images; 'train' is the whole set)",
            True,
            ("train", "all"),
            _read_digits,
        ),
        BuiltinDataset(
            "faces",
            "scikit-image LFW subset: 100 grey face crops",
            False,
            ("train", "all"),
            _read_faces,
        ),
        BuiltinDataset(
            "photos",
            "natural photographs shipped with scikit-image and scikit-learn, full resolution; "
            f"holdout: {', '.join(HOLDOUT_PHOTOS)}",
            False,
            ("train", "holdout", "all"),
            _read_photos,
        ),
    )
}
