import time

import numpy as np
import pytest
import torch

from genforge.data import ImageSet, load_dataset, read_images, to_tensor
from genforge.errors import UserError


def test_digits_load_fast_with_labels():
    start = time.perf_counter()
    data = load_dataset("digits", image_size=16, channels=1, labels=True)
    assert time.perf_counter() - start < 1.0
    assert isinstance(data, ImageSet) and len(data) == 1797
    assert data.images.shape == (1797, 1, 16, 16) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64 and data.num_classes == 10 and data.skipped == 0


def test_labels_only_when_asked():
    data = load_dataset("digits", image_size=8, channels=3)
    assert data.labels is None and data.class_names == [] and data.num_classes == 0
    assert data.images.shape == (1797, 3, 8, 8)
    assert torch.equal(data.images[:, 0], data.images[:, 2])
    assert torch.equal(load_dataset("digits", image_size=8, channels=1, split="all").images,
                       data.images[:, :1])


def test_unlabelled_dataset_refuses_labels():
    with pytest.raises(UserError, match="'faces' has no labels"):
        load_dataset("faces", image_size=8, channels=1, labels=True)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UserError, match="digits, faces, photos, folder:PATH"):
        load_dataset("mnist", image_size=8, channels=1)
    with pytest.raises(UserError, match="needs a path"):
        load_dataset("folder:", image_size=8, channels=1)


def test_bad_size_or_channels():
    with pytest.raises(UserError):
        load_dataset("digits", image_size=0, channels=1)
    with pytest.raises(UserError):
        load_dataset("digits", image_size=8, channels=2)


def test_photos_holdout_resized_to_squares():
    data = load_dataset("photos", image_size=32, channels=3, split="holdout")
    assert data.images.shape[1:] == (3, 32, 32) and 2 <= len(data) <= 4


def test_read_images_keeps_full_resolution():
    arrays, labels, names = read_images("photos", split="train")
    assert labels is None and names == []
    assert all(a.ndim == 3 and min(a.shape[:2]) >= 256 for a in arrays)
    _, labels, names = read_images("digits", labels=True)
    assert labels.shape == (1797,) and len(names) == 10


def test_channel_conversion_and_alpha():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    assert to_tensor([rgb], 4, 1).unique().tolist() == [round(0.299 * 200)]
    grey = np.full((4, 4, 1), 77, np.uint8)
    assert to_tensor([grey], 4, 3).unique().tolist() == [77]
    rgba = np.full((4, 4, 4), 255, np.uint8)
    rgba[:2, :, 3] = 0  # top half transparent: black after compositing on black
    out = to_tensor([rgba], 4, 3)[0]
    assert out[:, :2].max() == 0 and out[:, 2:].min() == 255
    deep = np.full((4, 4, 3), 65535, np.uint16)
    assert to_tensor([deep], 4, 3).unique().tolist() == [255]


def test_centre_crop_then_resize():
    wide = np.zeros((4, 12, 1), np.uint8)
    wide[:, 4:8] = 255  # only the centre square survives the crop
    assert to_tensor([wide], 4, 1).unique().tolist() == [255]
    assert to_tensor([wide], 2, 1).unique().tolist() == [255]


def test_mixed_sizes_become_one_tensor():
    arrays = [np.zeros((5, 7, 3), np.uint8), np.full((9, 9, 1), 9, np.uint8), np.zeros((5, 7, 3), np.uint8)]
    out = to_tensor(arrays, 6, 3)
    assert out.shape == (3, 3, 6, 6) and out[1].unique().tolist() == [9] and out[0].max() == 0
