"""Datasets as ready-to-train tensors.

A dataset spec is a bundled name (``digits``, ``faces``, ``photos``), ``folder:PATH`` or
``bsds500:PATH`` (the Berkeley photos in their published layout, data/bsds500.py).
``load_dataset`` returns every image already at one size and channel count as a single uint8
tensor: the datasets genforge targets fit in memory at training resolution, and keeping them
uint8 (4x smaller than float) lets the training loop sample batches by indexing, with no
loader workers. ``read_images`` gives full-resolution arrays for tasks that crop themselves
(super-resolution).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genforge.data import bsds500
from genforge.data.builtin import DATASETS
from genforge.data.color import luma
from genforge.data.folders import read_folder
from genforge.errors import UserError

__all__ = ["ImageSet", "holdout_split", "list_datasets", "load_dataset", "read_images", "to_tensor"]

_FOLDER = "folder:"
_FOLDER_SPLITS = ("train", "all")
_CHUNK_VALUES = 1 << 24  # float values converted at once: bounds memory for big groups


@dataclass
class ImageSet:
    name: str
    images: torch.Tensor  # uint8, N x C x H x W, one size for all
    labels: torch.Tensor | None  # int64 N, only when labels were requested
    class_names: list[str] = field(default_factory=list)  # [] when unlabelled
    skipped: int = 0  # unreadable files skipped while loading

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.images.shape[0]


def _parse(spec: str) -> tuple[str, Path | None]:
    if spec.startswith(_FOLDER):
        path = spec[len(_FOLDER) :]
        if not path:
            raise UserError(f"dataset '{spec}' needs a path, e.g. folder:/data/images")
        return _FOLDER, Path(path).expanduser()
    if spec.startswith(bsds500.PREFIX):
        return bsds500.PREFIX, bsds500.data_root(spec)
    if spec in DATASETS:
        return spec, None
    valid = ", ".join([*DATASETS, "folder:PATH", "bsds500:PATH"])
    raise UserError(f"unknown dataset '{spec}' (valid: {valid})")


def holdout_split(spec: str) -> str | None:
    """The split a dataset keeps for validation (never trained on), or None when it has none."""
    if spec.startswith(bsds500.PREFIX):
        return "val"
    return "holdout" if spec in DATASETS and "holdout" in DATASETS[spec].splits else None


def _check_labels(spec: str, kind: str, labels: bool) -> None:
    if labels and kind != _FOLDER and (kind not in DATASETS or not DATASETS[kind].labelled):
        labelled = ", ".join(n for n, d in DATASETS.items() if d.labelled)
        raise UserError(
            f"dataset '{spec}' has no labels "
            f"(labelled: {labelled}, or folder:PATH with one sub-folder per class)"
        )


def _check_folder_split(spec: str, split: str) -> None:
    if split not in _FOLDER_SPLITS:
        raise UserError(
            f"dataset '{spec}' has no split '{split}' (splits: {', '.join(_FOLDER_SPLITS)})"
        )


def read_images(
    spec: str, *, split: str = "train", labels: bool = False
) -> tuple[list[np.ndarray], np.ndarray | None, list[str]]:
    """Full-resolution H x W x C uint8/uint16 arrays, int64 labels (if asked) and class names."""
    kind, path = _parse(spec)
    _check_labels(spec, kind, labels)
    if kind == _FOLDER:
        _check_folder_split(spec, split)
        found = read_folder(path, class_folders=labels, name=spec)
        arrays, label_array, names = found.images, found.labels, found.class_names
    elif kind == bsds500.PREFIX:
        arrays, label_array, names = bsds500.read_photos(spec, split)[0], None, []
    else:
        arrays, label_array, names = DATASETS[kind].read(split)
    if not arrays:
        raise UserError(f"dataset '{spec}' split '{split}' is empty")
    return (arrays, label_array, names) if labels else (arrays, None, [])


def load_dataset(
    spec: str, *, image_size: int, channels: int, split: str = "train", labels: bool = False
) -> ImageSet:
    """All images of a dataset as uint8 N x ``channels`` x ``image_size`` x ``image_size``.

    Non-square images are centre-cropped (a generator has one output shape; cropping keeps
    proportions that stretching would distort). Alpha is composited on black, 16-bit reduced
    to 8-bit, colour turned grey by BT.601 luma or grey replicated to colour.
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise UserError(f"image_size must be a positive integer, got {image_size!r}")
    if channels not in (1, 3):
        raise UserError(f"channels must be 1 or 3, got {channels!r}")
    kind, path = _parse(spec)
    _check_labels(spec, kind, labels)
    skipped = 0
    if kind == _FOLDER:
        _check_folder_split(spec, split)
        found = read_folder(
            path,
            class_folders=labels,
            transform=lambda image: to_tensor([image], image_size, channels),
            name=spec,
        )
        images = torch.cat(found.images)
        label_array, names, skipped = found.labels, found.class_names, found.skipped
    elif kind == bsds500.PREFIX:
        images, label_array, names = to_tensor(bsds500.read_photos(spec, split)[0], image_size, channels), None, []
    else:
        arrays, label_array, names = DATASETS[kind].read(split)
        if not arrays:
            raise UserError(f"dataset '{spec}' split '{split}' is empty")
        images = to_tensor(arrays, image_size, channels)
    return ImageSet(
        name=spec,
        images=images,
        labels=torch.from_numpy(label_array) if labels else None,
        class_names=names if labels else [],
        skipped=skipped,
    )


def to_tensor(arrays: list[np.ndarray], image_size: int, channels: int) -> torch.Tensor:
    """H x W x C uint8/uint16 arrays to one uint8 N x channels x S x S tensor.

    Images of the same shape are converted together so a dataset like ``digits`` costs a few
    tensor operations rather than one per image.
    """
    out = torch.empty((len(arrays), channels, image_size, image_size), dtype=torch.uint8)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, array in enumerate(arrays):
        groups[(array.shape, array.dtype.str)].append(i)
    for (shape, _), members in groups.items():
        step = max(1, _CHUNK_VALUES // int(np.prod(shape)))
        for start in range(0, len(members), step):
            chunk = members[start : start + step]
            batch = np.stack([arrays[i] for i in chunk])
            out[chunk] = _convert(batch, image_size, channels)
    return out


def _convert(batch: np.ndarray, size: int, channels: int) -> torch.Tensor:
    _, height, width, depth = batch.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    batch = batch[:, top : top + side, left : left + side]
    scale = 257.0 if batch.dtype == np.uint16 else 1.0  # 65535 / 257 = 255
    x = torch.from_numpy(batch.astype(np.float32)).permute(0, 3, 1, 2) / scale
    if depth in (2, 4):
        x = x[:, :-1] * (x[:, -1:] / 255.0)
        depth -= 1
    if depth == 3 and channels == 1:
        x = luma(x)
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if depth == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.round().clamp(0, 255).to(torch.uint8)


def list_datasets() -> list[dict]:
    """One dict per bundled dataset (name, images, size, channels, labels, classes, splits,
    description), then the bundled translation sets, text corpora and clip sets; ``folder:PATH`` is not listed
    since it has no fixed contents."""
    from genforge.data.builtin_pairs import dataset_rows
    from genforge.data.movingdigits import list_clip_sets
    from genforge.data.text import list_corpora

    return [dataset.info() for dataset in DATASETS.values()] + dataset_rows() + list_corpora() + list_clip_sets()
