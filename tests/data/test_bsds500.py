"""bsds500:PATH: the published layout, its splits and annotations, on a generated miniature and on the
real set in ../shared/datasets when it is there."""

from pathlib import Path

import numpy as np
import pytest

from genforge.data import holdout_split, load_dataset, read_images
from genforge.data.bsds500 import read_annotations, read_photos
from genforge.data.io import write_image
from genforge.errors import UserError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "BSDS500"


def miniature(root: Path, counts=(("train", 3), ("val", 2), ("test", 1))) -> Path:
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for split, n in counts:
        for k in range(n):
            ident = f"{split[:2]}{10 - k}"  # ids sort numerically: 8 before 10
            write_image(root / "data" / "images" / split / f"{len(ident)}{ident}.jpg",
                        rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
            truth = np.empty((1, 2), dtype=object)
            for a in range(2):
                boundaries = np.zeros((24, 32), np.uint8)
                boundaries[:, 10 + a] = 1
                segmentation = np.ones((24, 32), np.uint16)
                segmentation[:, 11:] = 2
                truth[0, a] = {"Segmentation": segmentation, "Boundaries": boundaries}
            folder = root / "data" / "groundTruth" / split
            folder.mkdir(parents=True, exist_ok=True)
            savemat(folder / f"{len(ident)}{ident}.mat", {"groundTruth": truth})
    return root


def test_splits_follow_the_sr_convention(tmp_path):
    root = miniature(tmp_path / "BSDS500")
    spec = f"bsds500:{root}"
    assert len(read_images(spec, split="train")[0]) == 4  # train + test folders
    assert len(read_images(spec, split="val")[0]) == 2
    assert len(read_images(spec, split="all")[0]) == 6
    assert len(read_images(f"bsds500:{root / 'data'}", split="train-only")[0]) == 3  # data/ itself works too
    photos, ids = read_photos(spec, "val")
    assert photos[0].shape == (24, 32, 3) and photos[0].flags.writeable
    assert holdout_split(spec) == "val" and holdout_split("photos") == "holdout" and holdout_split("digits") is None
    assert load_dataset(spec, image_size=16, channels=1).images.shape == (4, 1, 16, 16)


def test_annotations_mean_the_annotators(tmp_path):
    root = miniature(tmp_path / "BSDS500")
    contours, regions, ids = read_annotations(f"bsds500:{root}", "val")
    assert len(contours) == len(ids) == 2
    assert contours[0].shape == (24, 32) and contours[0][0, 10] == 0.5 and contours[0][0, 11] == 0.5
    assert contours[0][0, 0] == 0 and set(np.unique(regions[0])) == {1, 2}


def test_contour_pairs_serve_pix2pix(tmp_path):
    """bsds500:PATH as a translation set: contours (white on black, dilated one pixel) -> photo,
    train = train + test, holdout = val."""
    from genforge.data.pair_folders import read_translation

    root = miniature(tmp_path / "BSDS500")
    train = read_translation(f"bsds500:{root}", "train")
    holdout = read_translation(f"bsds500:{root}", "holdout")
    assert train.kind == "paired" and len(train.a) == 4 and len(holdout.a) == 2
    assert (train.a_channels, train.b_channels) == (1, 3)
    edges = holdout.a[0][:, :, 0]
    assert edges.shape == (24, 32) and edges.dtype == np.uint8
    # annotators drew columns 10 and 11 (mean 0.5 each); the dilation widens them to 9..12 at 128
    assert list(edges[5, 8:14]) == [0, 128, 128, 128, 128, 0]
    assert np.array_equal(holdout.b[0], read_photos(f"bsds500:{root}", "val")[0][0])


def test_photo2poster_gains_the_training_photos(tmp_path):
    """photo2poster:PATH: the BSDS500 train photos join the two unpaired domains alternately (B
    posterized, A's truth the posterized A), the bundled photos stay first, the holdout is the bundled
    one and needs no BSDS500 read."""
    from genforge.data.builtin_pairs import posterize
    from genforge.data.pair_folders import read_translation

    root = miniature(tmp_path / "BSDS500")
    bundled, train = read_translation("photo2poster", "train"), read_translation(f"photo2poster:{root}", "train")
    photos, ids = read_photos(f"bsds500:{root}", "train")
    assert train.kind == "unpaired" and len(train.a) == len(bundled.a) + 2 and len(train.b) == len(bundled.b) + 2
    assert train.names_a[: len(bundled.a)] == bundled.names_a
    assert train.names_a[-2:] == [f"{ids[0]}.jpg", f"{ids[2]}.jpg"]
    assert np.array_equal(train.a[-1], photos[2]) and np.array_equal(train.b[-1], posterize(photos[3]))
    assert np.array_equal(train.truth[-2], posterize(photos[0])) and len(train.truth) == len(train.a)
    train.a[-1][:] = 0  # copies: the cache is untouched
    assert np.array_equal(read_translation(f"photo2poster:{root}", "train").a[-1], photos[2])
    holdout = read_translation(f"photo2poster:{tmp_path / 'absent'}", "holdout")
    assert holdout.names_a == read_translation("photo2poster", "holdout").names_a
    with pytest.raises(UserError, match="needs the BSDS500 folder"):
        read_translation("photo2poster:", "train")
    with pytest.raises(UserError, match="'photo2poster:.*absent' does not exist"):
        read_translation(f"photo2poster:{tmp_path / 'absent'}", "train")


@pytest.mark.parametrize("spec,match", [("bsds500:", "needs a path"), ("bsds500:/nonexistent/BSDS", "does not exist"),
                                        ("bsds500:{tmp}", "no data/images")])
def test_bad_paths_are_one_clear_error(tmp_path, spec, match):
    with pytest.raises(UserError, match=match):
        read_images(spec.format(tmp=tmp_path))


def test_unknown_split_and_bad_photo_are_named(tmp_path):
    root = miniature(tmp_path / "BSDS500")
    with pytest.raises(UserError, match="no split 'holdout'.*train, val"):
        read_images(f"bsds500:{root}", split="holdout")
    bad = root / "data" / "images" / "val" / "999.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="999.jpg"):
        read_images(f"bsds500:{root}", split="val")


@pytest.fixture
def bsds500():
    if not (SHARED / "data" / "images" / "val").is_dir():
        pytest.skip(f"BSDS500 not found at {SHARED} (see ../shared/datasets/README.md)")
    return f"bsds500:{SHARED}"


def test_the_real_set_has_400_training_photos_and_bsd100(bsds500):
    assert len(read_images(bsds500, split="val")[0]) == 100
    ids = read_photos(bsds500, "train")[1]
    assert len(ids) == 400 and len(set(ids)) == 400
