"""The data options users of the Pix2Pix/CycleGAN repository expect: which side is the input
(``data.direction``) and how images of any size become training crops (``data.preprocess`` with
``data.load_size`` and ``data.crop_size``), with the one-line summary training prints first.

A is the input and B the output (``AtoB``): in ``aligned:PATH`` the folder ``A`` or the left half
of a side-by-side image, in ``unaligned:PATH`` ``trainA``/``testA``, in ``semantic:PATH`` the label
maps. ``BtoA`` swaps the sides of aligned and unaligned data (the known true mapping of an unpaired
set, which goes A -> B, is then unknown); semantic data has one direction, label map -> photo.

Preprocessing (``crop_size`` is the training crop side, ``task.patch_size`` unless given):

* ``crop`` (default): images keep their size; one smaller than the crop is scaled up (aspect kept)
  so that its shorter side is ``crop_size``;
* ``none``: images keep their size; those smaller than the crop are left out (one warning);
* ``resize_and_crop``: every image is resized to ``load_size`` x ``load_size`` (aspect not kept,
  as pix2pix does), then cropped;
* ``scale_width_and_crop``: every image is scaled to width ``load_size`` (aspect kept, height at
  least ``crop_size``), then cropped.

Images are resized with the project's bicubic (antialiased when shrinking), label maps with nearest
neighbours (no invented class ids). Both members of a pair are resized alike; a pair whose members
disagree in size was refused by name when it was read (genforge/data/pair_folders.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from genforge.data.degrade import imresize_np
from genforge.data.pair_folders import TranslationData
from genforge.errors import ConfigError

__all__ = ["DIRECTIONS", "PREPROCESS", "DataSummary", "apply_direction", "preprocess_translation", "read_run_data"]

DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS = ("resize_and_crop", "scale_width_and_crop", "crop", "none")


@dataclass
class DataSummary:
    """Counts for the line printed at the start of training."""

    found: int  # pairs (paired, semantic) or images of both domains (unpaired)
    resized: int = 0
    refused: int = 0  # left out: smaller than the crop with preprocess none
    unit: str = "pairs"

    def line(self, spec: str, split: str, direction: str, preprocess: str) -> str:
        return (f"dataset {spec} ({split}, {direction}, preprocess {preprocess}): {self.found} {self.unit} found, "
                f"{self.resized} resized, {self.refused} refused")


def apply_direction(data: TranslationData, direction: str, spec: str) -> TranslationData:
    """data with A and B swapped for BtoA (see the module docstring)."""
    if direction == "AtoB":
        return data
    if direction != "BtoA":
        raise ConfigError(f"config error: data.direction: must be one of {', '.join(DIRECTIONS)} (got {direction!r})")
    if data.kind == "semantic":
        raise ConfigError(f"config error: data.direction: BtoA does not apply to semantic data ({spec!r}): it "
                          "translates label maps (A) to photos (B) only")
    return dataclasses.replace(data, a=data.b, b=data.a, names_a=data.names_b, names_b=data.names_a,
                               a_channels=data.b_channels, b_channels=data.a_channels, truth=None)


def _resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = imresize_np(image, size=size)
    return out[:, :, None] if out.ndim == 2 else out


def _resize_labels(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = ids.shape[:2]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.intp), w - 1)
    return np.ascontiguousarray(ids[rows][:, cols])


def target_size(height: int, width: int, mode: str, load_size: int, crop_size: int) -> tuple[int, int] | None:
    """(height, width) an image of this size is resized to, or None to leave it (or refuse it, for
    mode none when it is smaller than the crop)."""
    if mode == "resize_and_crop":
        size = (load_size, load_size)
    elif mode == "scale_width_and_crop":
        size = (max(crop_size, round(height * load_size / width)), load_size)
    elif mode == "crop" and min(height, width) < crop_size:
        factor = crop_size / min(height, width)
        size = (max(crop_size, round(height * factor)), max(crop_size, round(width * factor)))
    else:
        return None
    return None if size == (height, width) else size


def check_sizes(mode: str, load_size: int | None, crop_size: int) -> int:
    """The load size a mode uses (crop_size when not given); load_size below crop_size is refused."""
    if mode not in PREPROCESS:
        raise ConfigError(f"config error: data.preprocess: must be one of {', '.join(PREPROCESS)} (got {mode!r})")
    load = crop_size if load_size is None else load_size
    if mode in ("resize_and_crop", "scale_width_and_crop") and load < crop_size:
        raise ConfigError(f"config error: data.load_size: {load} is smaller than the crop size {crop_size} "
                          f"(data.crop_size or task.patch_size); preprocess {mode} resizes to load_size, then crops")
    return load


def preprocess_translation(data: TranslationData, mode: str, *, load_size: int | None, crop_size: int,
                           ) -> tuple[TranslationData, DataSummary]:
    """Resize the images of `data` as `mode` asks (copies; members of a pair alike) and count them.
    Mode none only counts the images smaller than the crop, which the training crops leave out."""
    load = check_sizes(mode, load_size, crop_size)
    semantic = data.kind == "semantic"

    def resize(images, size, labels=False):
        return _resize_labels(images, size) if labels else _resize_image(images, size)

    if data.kind == "unpaired":
        summary = DataSummary(len(data.a) + len(data.b), unit="images")
        sides = []
        for images in (data.a, data.b):
            out = []
            for x in images:
                size = target_size(*x.shape[:2], mode, load, crop_size)
                summary.resized += size is not None
                summary.refused += mode == "none" and min(x.shape[:2]) < crop_size
                out.append(x if size is None else resize(x, size))
            sides.append(out)
        truth = data.truth
        if truth is not None:  # the true mapping of each a[i], resized as a[i] was
            truth = [t if t.shape[:2] == a.shape[:2] else resize(t, a.shape[:2]) for t, a in zip(truth, sides[0])]
        return dataclasses.replace(data, a=sides[0], b=sides[1], truth=truth), summary
    summary = DataSummary(len(data.a))
    a_out, b_out = [], []
    for a, b in zip(data.a, data.b):
        size = target_size(*a.shape[:2], mode, load, crop_size)
        summary.resized += size is not None
        summary.refused += mode == "none" and min(a.shape[:2]) < crop_size
        a_out.append(a if size is None else resize(a, size, labels=semantic))
        b_out.append(b if size is None else resize(b, size))
    return dataclasses.replace(data, a=a_out, b=b_out), summary


def read_run_data(run: dict, split: str) -> TranslationData:
    """A split of the translation data a resolved run config (a dict, as model folders hold it)
    trained on, in its direction and preprocessed as its training images were (folders saved before
    these keys existed get the defaults: AtoB, crop)."""
    from genforge.data.pair_folders import read_translation

    data_cfg, task_cfg = run.get("data") or {}, run.get("task") or {}
    spec = data_cfg["dataset"]
    data = read_translation(spec, split, label_nc=(run.get("model") or {}).get("label_nc"))
    data = apply_direction(data, data_cfg.get("direction", "AtoB"), spec)
    crop = data_cfg.get("crop_size") or task_cfg.get("patch_size") or 256
    return preprocess_translation(data, data_cfg.get("preprocess", "crop"), load_size=data_cfg.get("load_size"),
                                  crop_size=crop)[0]
