import socket

import numpy as np
import pytest

from genforge.data import builtin, list_datasets
from genforge.data.builtin import DATASETS, HOLDOUT_PHOTOS, photo_names
from genforge.errors import UserError


def test_digits_has_1797_labelled_8x8_images():
    images, labels, names = DATASETS["digits"].read("train")
    assert len(images) == 1797 and images[0].shape == (8, 8, 1) and images[0].dtype == np.uint8
    assert labels.dtype == np.int64 and sorted(set(labels.tolist())) == list(range(10))
    assert names == [str(d) for d in range(10)]
    assert max(int(image.max()) for image in images) == 255


def test_digits_match_scikit_learn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels, _ = DATASETS["digits"].read("all")
    np.testing.assert_array_equal(np.stack(images)[..., 0], np.rint(bunch.images * 255 / 16))
    np.testing.assert_array_equal(labels, bunch.target)


def test_faces_are_100_unlabelled_25x25():
    images, labels, names = DATASETS["faces"].read()
    assert len(images) == 100 and {i.shape for i in images} == {(25, 25, 1)}
    assert labels is None and names == []


def test_photos_split_is_disjoint_and_covers_all():
    train, holdout = photo_names("train"), photo_names("holdout")
    assert train and len(holdout) >= 2 and not set(train) & set(holdout)
    assert sorted(train + holdout) == sorted(photo_names("all"))
    images, _, _ = DATASETS["photos"].read("holdout")
    assert len(images) == len(HOLDOUT_PHOTOS)
    assert any(image.shape[2] == 3 for image in images)


def test_photos_keep_full_resolution_and_grey_stays_grey():
    images, _, _ = DATASETS["photos"].read("all")
    shapes = dict(zip(photo_names("all"), (i.shape for i in images)))
    assert shapes["astronaut"] == (512, 512, 3)
    assert shapes["camera"] == (512, 512, 1)
    assert all(min(s[:2]) >= 256 for s in shapes.values())


def test_photos_load_without_network(monkeypatch):
    def blocked(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", blocked)
    builtin._photo.cache_clear()
    images, _, _ = DATASETS["photos"].read("all")
    assert len(images) == len(builtin.PHOTOS)


def test_unknown_split_is_a_user_error():
    with pytest.raises(UserError, match="no split 'holdout'.*train, all"):
        DATASETS["digits"].read("holdout")


def test_returned_arrays_are_copies():
    images, _, _ = DATASETS["faces"].read()
    images[0][:] = 0
    assert DATASETS["faces"].read()[0][0].any()


def test_list_datasets_describes_each_bundled_dataset():
    rows = {row["name"]: row for row in list_datasets()}
    assert {"digits", "faces", "photos"} <= set(rows)
    assert rows["digits"]["images"] == 1797 and rows["digits"]["size"] == "8x8"
    assert rows["digits"]["labels"] is True and rows["digits"]["classes"] == 10
    assert rows["faces"]["size"] == "25x25" and rows["faces"]["labels"] is False
    assert rows["photos"]["splits"] == ["train", "holdout", "all"]
    assert rows["photos"]["channels"] == "1,3" and ".." in rows["photos"]["size"]
    assert all(row["description"] for row in rows.values())
