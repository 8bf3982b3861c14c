import logging

import numpy as np
import pytest

from genforge.data import load_dataset
from genforge.data.folders import read_folder
from genforge.data.io import write_image
from genforge.errors import UserError


def make_tree(root, files):
    for rel, value in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, bytes):
            path.write_bytes(value)
        else:
            write_image(path, np.full((6, 8, 3), value, np.uint8))


@pytest.fixture
def pets(tmp_path):
    make_tree(
        tmp_path,
        {
            "dogs/a.png": 10,
            "dogs/deep/b.jpg": 20,
            "cats/c.png": 30,
            "cats/broken.png": b"\x89PNG\r\n\x1a\nnot really",
            "loose.png": 40,
            "readme.txt": b"ignored: not an image extension",
        },
    )
    return tmp_path


def test_class_folders_give_sorted_classes_and_skip_broken_files(pets, caplog):
    with caplog.at_level(logging.WARNING, logger="genforge"):
        found = read_folder(pets, class_folders=True)
    assert found.class_names == ["cats", "dogs"]
    assert found.labels.tolist() == [0, 1, 1]  # cats/c, dogs/a, dogs/deep/b
    assert found.skipped == 1 and len(found.images) == 3
    skips = [r.getMessage() for r in caplog.records if "broken.png" in r.getMessage()]
    assert len(skips) == 1 and "\n" not in skips[0]
    assert any("outside class sub-folders" in r.getMessage() for r in caplog.records)


def test_without_classes_every_image_is_read(pets):
    found = read_folder(pets)
    assert len(found.images) == 4 and found.labels is None and found.class_names == []
    assert found.skipped == 1


def test_load_dataset_from_folder(pets):
    data = load_dataset(f"folder:{pets}", image_size=4, channels=3, labels=True)
    assert data.images.shape == (3, 3, 4, 4) and data.images.dtype.is_floating_point is False
    assert data.labels.tolist() == [0, 1, 1] and data.num_classes == 2 and data.skipped == 1
    assert data.name == f"folder:{pets}"
    with pytest.raises(UserError, match="no split 'holdout'"):
        load_dataset(f"folder:{pets}", image_size=4, channels=3, split="holdout")


def test_empty_or_unreadable_folder_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no readable images$"):
        read_folder(tmp_path / "empty")
    make_tree(tmp_path / "bad", {"x.png": b"", "y.jpg": b"text", "z.gif": b"GIF89a"})
    with pytest.raises(UserError, match=r"no readable images \(3 files skipped as unreadable\)"):
        load_dataset(f"folder:{tmp_path / 'bad'}", image_size=8, channels=1)


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}", image_size=8, channels=1)


def test_labels_need_class_sub_folders(tmp_path):
    make_tree(tmp_path, {"a.png": 1, "b.png": 2})
    with pytest.raises(UserError, match="no class sub-folders"):
        read_folder(tmp_path, class_folders=True)
