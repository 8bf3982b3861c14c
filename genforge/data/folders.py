"""``folder:PATH`` datasets: the user's own images, found recursively.

Real folders contain the odd broken download or mis-named file. One such file should cost a
warning, not the run, so unreadable files are skipped, logged one line each and counted; only
a folder with nothing usable at all is an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genforge.data.io import list_image_files, read_image
from genforge.errors import BadImageError, UserError

log = logging.getLogger(__name__)  # a child of "genforge": the CLI's handler shows it


@dataclass
class FolderImages:
    images: list[Any]  # what ``transform`` returned, by default H x W x C arrays
    labels: np.ndarray | None  # int64, only with class_folders
    class_names: list[str]
    skipped: int


def read_folder(
    root: str | os.PathLike,
    *,
    class_folders: bool = False,
    transform: Callable[[np.ndarray], Any] | None = None,
    max_pixels: int | None = None,
    name: str | None = None,
) -> FolderImages:
    """Read every image under ``root``.

    With ``class_folders`` the first-level sub-folders are the classes (sorted names, label =
    index) and images lying directly in ``root`` are ignored, since they belong to no class.
    ``transform`` is applied to each image as it is read, so a large folder never has to fit
    in memory at full resolution. ``name`` is how errors refer to the dataset.
    """
    root = Path(root).expanduser()
    name = name or f"folder:{root}"
    if not root.is_dir():
        problem = "is not a directory" if root.exists() else "does not exist"
        raise UserError(f"dataset '{name}': '{root}' {problem}")
    files = list_image_files(root)
    class_of: dict[Path, str] = {}
    class_names: list[str] = []
    if class_folders:
        class_of = {p: p.relative_to(root).parts[0] for p in files if p.parent != root}
        loose = len(files) - len(class_of)
        if loose:
            log.warning(
                "dataset '%s': ignoring %d image(s) outside class sub-folders", name, loose
            )
        files = [p for p in files if p in class_of]
        class_names = sorted(set(class_of.values()))
        if not class_names:
            raise UserError(
                f"dataset '{name}' has no class sub-folders with images "
                "(labels need one sub-folder per class)"
            )
    index = {c: i for i, c in enumerate(class_names)}
    images, labels, skipped = [], [], 0
    for path in files:
        try:
            image = read_image(path, max_pixels=max_pixels)
        except BadImageError as exc:
            log.warning("skipping unreadable file: %s", exc)
            skipped += 1
            continue
        images.append(transform(image) if transform else image)
        if class_folders:
            labels.append(index[class_of[path]])
    if not images:
        detail = f" ({skipped} files skipped as unreadable)" if skipped else ""
        raise UserError(f"dataset '{name}' has no readable images{detail}")
    return FolderImages(
        images, np.array(labels, np.int64) if class_folders else None, class_names, skipped
    )
