"""Image-to-image translation data in the folder layouts users of Pix2Pix, CycleGAN and SPADE
already have, and ``read_translation``, which also serves the bundled pair sets by name.

* ``aligned:PATH`` - ``PATH/A`` and ``PATH/B`` matched by relative path without suffix
  (optionally ``PATH/A/train`` ...), or side-by-side AB images (A left half, B right half, as
  the pix2pix datasets ship) in ``PATH/<split>`` or ``PATH`` itself;
* ``unaligned:PATH`` - ``PATH/trainA``, ``PATH/trainB`` (holdout: ``testA``, ``testB``);
* ``semantic:PATH`` - ``PATH/labels`` (single-channel PNGs of class ids) and ``PATH/images``
  matched by relative path without suffix, optionally under ``PATH/<split>``; needs ``label_nc``;
* ``bsds500:PATH`` - the Berkeley photos with their human contours: contours -> photo (data/bsds500.py).

Split ``train`` is the sub-folder ``train``; ``holdout`` is ``test``, or ``val`` when there is no
``test``. A folder without split sub-folders serves both splits (with a warning for holdout).
Every problem with the files - a missing partner, partners of different sizes, a class id out of
range, an unreadable file - is a ``UserError`` naming the file before training starts: a pair
cannot be skipped silently without shifting what the model learns (unlike ``folder:PATH``, where
one broken image only costs a warning).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genforge.data import bsds500
from genforge.data.io import list_image_files, read_image, read_label_map
from genforge.errors import UserError

__all__ = ["DONT_CARE", "KINDS", "SPLITS", "TranslationData", "read_translation"]

log = logging.getLogger(__name__)

DONT_CARE = 255  # the class id SPADE/Cityscapes-style label maps use for "unlabelled"
SPLITS = ("train", "holdout")
KINDS = ("paired", "unpaired", "semantic")
_PREFIXES = ("aligned:", "unaligned:", "semantic:")


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



def _read_labels(path: Path, label_nc: int) -> np.ndarray:
    ids = read_label_map(path)  # a BadImageError (a UserError) names the file
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
        label_map, image = _read_labels(files_labels[key], label_nc), _read(files_images[key])
        if label_map.shape != image.shape[:2]:
            raise UserError(f"dataset '{spec}': label map '{files_labels[key]}' is {_size(label_map)} but "
                            f"its image '{files_images[key]}' is {_size(image)}; they must have the same size")
        labels.append(label_map)
        images.append(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image)
        names_a.append(files_labels[key].relative_to(dir_labels).as_posix())
        names_b.append(files_images[key].relative_to(dir_images).as_posix())
    return TranslationData("semantic", labels, images, names_a, names_b, label_nc, 3, label_nc=label_nc)


def read_translation(spec: str, split: str = "train", *, label_nc: int | None = None) -> TranslationData:
    """A translation dataset at full resolution: a bundled name, ``aligned:PATH``,
    ``unaligned:PATH`` or ``semantic:PATH`` (which needs ``label_nc``; other kinds ignore it)."""
    # imported here: the bundled sets build TranslationData records, so they import this module
    from genforge.data.builtin_pairs import BUNDLED, POSTER_PREFIX, bundled_pairs, photo2poster_pairs

    if split not in SPLITS:
        raise UserError(f"translation datasets have splits {', '.join(SPLITS)}, not '{split}'")
    if spec in BUNDLED:
        return bundled_pairs(spec, split, label_nc=label_nc)
    if spec.startswith(POSTER_PREFIX):
        return photo2poster_pairs(spec, split)
    if spec.startswith(bsds500.PREFIX):
        return bsds500.contour_pairs(spec, split)
    prefix = next((p for p in _PREFIXES if spec.startswith(p)), None)
    if prefix is None:
        valid = ", ".join([*BUNDLED, *(f"{p}PATH" for p in (*_PREFIXES, bsds500.PREFIX, POSTER_PREFIX))])
        raise UserError(f"unknown translation dataset '{spec}' (valid: {valid})")
    if not spec[len(prefix) :]:
        raise UserError(f"dataset '{spec}' needs a path, e.g. {prefix}/data/facades")
    root = Path(spec[len(prefix) :]).expanduser()
    if prefix == "aligned:":
        return _read_aligned(root, split, spec)
    if prefix == "unaligned:":
        return _read_unaligned(root, split, spec)
    return _read_semantic(root, split, spec, label_nc)
