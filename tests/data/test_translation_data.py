import logging

import numpy as np
import pytest
import torch
from PIL import Image

from genforge.data import builtin_pairs, list_datasets
from genforge.data.builtin import HOLDOUT_PHOTOS, photo_names
from genforge.data.builtin_pairs import BUNDLED, LABEL_NC, posterize, translation_datasets
from genforge.data.pair_folders import TranslationData, read_translation
from genforge.data.patches import TranslationPatches, holdout_pairs
from genforge.errors import UserError

# ----------------------------------------------------------------------------- helpers


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array)
    image = Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array, mode)
    image.save(path)


def rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def grey(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 1), dtype=np.uint8)


def palette_png(path, ids):
    image = Image.fromarray(np.asarray(ids, np.uint8), "P")
    # a palette whose colours are not the ids: reading through RGB would give other numbers
    image.putpalette([(7 * i + 40) % 256 for i in range(768)])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def paired(a, b, names=None):
    names = names or [f"{i}" for i in range(len(a))]
    return TranslationData("paired", a, b, names, list(names), a[0].shape[2], b[0].shape[2])


# ----------------------------------------------------------------------------- bundled sets

SHAPES = {  # kind, A channels (semantic: label_nc), B channels, train / holdout examples
    "edges2photos": ("paired", 1, 3, 10, 3),
    "labels2photos": ("semantic", LABEL_NC, 3, 10, 3),
    "gray2color": ("paired", 1, 3, 5, 2),
    "photo2poster": ("unpaired", 3, 3, 5, 3),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_bundled_sets_have_documented_kinds_channels_and_shapes(name):
    kind, a_channels, b_channels, n_train, n_holdout = SHAPES[name]
    train, holdout = read_translation(name, "train"), read_translation(name, "holdout")
    for data, n in ((train, n_train), (holdout, n_holdout)):
        assert data.kind == kind and data.a_channels == a_channels and data.b_channels == b_channels
        assert len(data.a) == len(data.names_a) == n and len(data.b) == len(data.names_b)
        assert all(x.dtype == np.uint8 for x in data.a + data.b)
        assert all(b.ndim == 3 and b.shape[2] == 3 for b in data.b)
        if kind == "semantic":
            assert data.label_nc == LABEL_NC and all(a.ndim == 2 for a in data.a)
        else:
            assert all(a.ndim == 3 and a.shape[2] == a_channels for a in data.a)
        if kind != "unpaired":
            assert data.names_a == data.names_b
            assert all(a.shape[:2] == b.shape[:2] for a, b in zip(data.a, data.b))
    # train and holdout differ: other photos, other pixels
    assert not set(train.names_a) & set(holdout.names_a)
    assert set(holdout.names_a) <= set(HOLDOUT_PHOTOS)
    assert not any(a.shape == h.shape and np.array_equal(a, h) for a in train.a for h in holdout.a)


def test_bundled_sets_are_regenerated_identically():
    first = {(n, s): read_translation(n, s) for n in BUNDLED for s in ("train", "holdout")}
    for cached in ("_bundled", "_segmentation", "_edges", "_poster", "_grey", "_rgb"):
        getattr(builtin_pairs, cached).cache_clear()
    for (name, split), data in first.items():
        again = read_translation(name, split)
        for old, new in ((data.a, again.a), (data.b, again.b), (data.truth or [], again.truth or [])):
            assert len(old) == len(new) and all(np.array_equal(x, y) for x, y in zip(old, new))


def test_bundled_arrays_are_copies():
    data = read_translation("edges2photos")
    data.a[0][:] = 7
    assert not (read_translation("edges2photos").a[0] == 7).all()


def test_edges_are_white_on_black_and_gray2color_is_bt601():
    edges = read_translation("edges2photos")
    for a in edges.a:
        assert set(np.unique(a).tolist()) == {0, 255} and 0.005 < (a > 0).mean() < 0.6
    data = read_translation("gray2color", "holdout")
    assert data.names_a == [n for n in HOLDOUT_PHOTOS if n != "coins"]  # grey photos skipped
    for a, b in zip(data.a, data.b):
        luma = np.rint(b.astype(np.float64) @ [0.299, 0.587, 0.114])
        np.testing.assert_array_equal(a[:, :, 0], luma)
        assert (b[:, :, 0] != b[:, :, 1]).mean() > 0.1  # really colour


def test_labels2photos_ids_are_in_range_with_several_classes_per_image():
    for split in ("train", "holdout"):
        data = read_translation("labels2photos", split, label_nc=LABEL_NC)
        for name, label_map in zip(data.names_a, data.a):
            assert label_map.max() < LABEL_NC
            share = np.bincount(label_map.ravel(), minlength=LABEL_NC) / label_map.size
            assert (share > 0.01).sum() >= 3, (name, share)
    everything = np.concatenate([a.ravel() for a in read_translation("labels2photos").a])
    assert len(np.unique(everything)) == LABEL_NC
    with pytest.raises(UserError, match="label_nc 8, not 5"):
        read_translation("labels2photos", label_nc=5)


def test_photo2poster_domains_are_disjoint_and_truth_is_posterize():
    data = read_translation("photo2poster")
    assert not set(data.names_a) & set(data.names_b)
    assert sorted(data.names_a + data.names_b) == sorted(photo_names("train"))
    assert len(data.truth) == len(data.a)
    for a, t in zip(data.a, data.truth):
        np.testing.assert_array_equal(t, posterize(a))
    assert all(set(np.unique(b).tolist()) <= {32, 96, 160, 224} for b in data.b)
    holdout = read_translation("photo2poster", "holdout")
    for a, b, t in zip(holdout.a, holdout.b, holdout.truth):
        np.testing.assert_array_equal(b, t)
        np.testing.assert_array_equal(t, posterize(a))


def test_posterize_smooths_then_quantises_to_four_levels():
    image = np.full((9, 9, 3), 100, np.uint8)
    image[:, :, 1], image[:, :, 2] = 10, 250
    out = posterize(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[:, :, 0] == 96).all() and (out[:, :, 1] == 32).all() and (out[:, :, 2] == 224).all()
    speck = np.full((9, 9, 3), 40, np.uint8)
    speck[4, 4] = 120  # one bright pixel is smoothed away instead of becoming a level of its own
    assert (posterize(speck) == 32).all()


def test_translation_datasets_and_list_datasets_rows():
    rows = {r["name"]: r for r in translation_datasets()}
    assert set(rows) == set(BUNDLED)
    for name, (kind, _, _, n_train, n_holdout) in SHAPES.items():
        assert rows[name]["kind"] == kind and rows[name]["description"]
        assert (rows[name]["train"], rows[name]["holdout"]) == (n_train, n_holdout)
    listed = {r["name"]: r for r in list_datasets()}
    assert set(BUNDLED) <= set(listed) and {"digits", "faces", "photos"} <= set(listed)
    assert listed["edges2photos"]["images"] == 13 and listed["edges2photos"]["channels"] == "1->3"


def test_unknown_spec_and_split():
    with pytest.raises(UserError, match="edges2photos.*photo2poster.*aligned:PATH"):
        read_translation("facades")
    with pytest.raises(UserError, match="not 'all'"):
        read_translation("edges2photos", "all")


# ----------------------------------------------------------------------------- user folders


def test_aligned_ab_images_split_into_halves(tmp_path):
    ab = [rgb(8, 12, 0), rgb(6, 10, 1)]
    save(tmp_path / "train" / "1.png", ab[0])
    save(tmp_path / "train" / "2.png", ab[1])
    save(tmp_path / "val" / "9.png", rgb(4, 6, 2))
    data = read_translation(f"aligned:{tmp_path}")
    assert data.kind == "paired" and data.names_a == data.names_b == ["1.png", "2.png"]
    assert (data.a_channels, data.b_channels) == (3, 3)
    for image, a, b in zip(ab, data.a, data.b):
        half = image.shape[1] // 2
        np.testing.assert_array_equal(a, image[:, :half])
        np.testing.assert_array_equal(b, image[:, half:])
    holdout = read_translation(f"aligned:{tmp_path}", "holdout")  # no test/: val/
    assert holdout.names_a == ["9.png"] and holdout.a[0].shape == (4, 3, 3)


def test_aligned_flat_ab_folder_serves_both_splits(tmp_path, caplog):
    save(tmp_path / "x.png", rgb(4, 8, 0))
    assert len(read_translation(f"aligned:{tmp_path}").a) == 1
    with caplog.at_level(logging.WARNING):
        assert len(read_translation(f"aligned:{tmp_path}", "holdout").a) == 1
    assert "no test/ or val/" in caplog.text


def test_aligned_a_b_folders_match_by_relative_path_without_suffix(tmp_path):
    a1, b1, a2, b2 = grey(5, 7, 0), rgb(5, 7, 1), grey(4, 4, 2), grey(4, 4, 3)
    save(tmp_path / "A" / "train" / "x.png", a1)
    save(tmp_path / "B" / "train" / "x.bmp", b1)
    save(tmp_path / "A" / "train" / "sub" / "y.png", a2)
    save(tmp_path / "B" / "train" / "sub" / "y.tif", b2)
    save(tmp_path / "A" / "test" / "z.png", grey(3, 3, 4))
    save(tmp_path / "B" / "test" / "z.png", grey(3, 3, 5))
    data = read_translation(f"aligned:{tmp_path}")
    assert data.names_a == ["sub/y.png", "x.png"] and data.names_b == ["sub/y.tif", "x.bmp"]
    # A is all grey: 1 channel; B has a colour image: every B becomes RGB
    assert (data.a_channels, data.b_channels) == (1, 3)
    np.testing.assert_array_equal(data.a[1], a1)
    np.testing.assert_array_equal(data.b[1], b1)
    np.testing.assert_array_equal(data.b[0], np.repeat(b2, 3, axis=2))
    holdout = read_translation(f"aligned:{tmp_path}", "holdout")
    assert holdout.names_a == ["z.png"] and (holdout.a_channels, holdout.b_channels) == (1, 1)


def test_aligned_reads_16_bit_and_alpha_as_8_bit(tmp_path):
    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    Image.fromarray(deep).save(tmp_path / "d.png")  # I;16
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    (tmp_path / "d.png").rename(tmp_path / "A" / "d.png")
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 200, 255
    save(tmp_path / "B" / "d.png", rgba)
    data = read_translation(f"aligned:{tmp_path}")
    np.testing.assert_array_equal(data.a[0][:, :, 0], np.rint(deep / 257.0))
    assert data.b[0].shape == (3, 4, 3) and (data.b[0] == 200).all()


def test_unaligned_domains(tmp_path):
    for i in range(3):
        save(tmp_path / "trainA" / f"a{i}.png", rgb(6 + i, 5, i))
    save(tmp_path / "trainB" / "b0.png", grey(9, 9, 9))
    save(tmp_path / "testA" / "t.png", rgb(4, 4, 0))
    save(tmp_path / "testB" / "u.png", rgb(4, 4, 1))
    data = read_translation(f"unaligned:{tmp_path}")
    assert data.kind == "unpaired" and len(data.a) == 3 and len(data.b) == 1 and data.truth is None
    assert data.names_a == ["a0.png", "a1.png", "a2.png"] and data.names_b == ["b0.png"]
    assert (data.a_channels, data.b_channels) == (3, 1) and data.a[2].shape == (8, 5, 3)
    holdout = read_translation(f"unaligned:{tmp_path}", "holdout")
    assert holdout.names_a == ["t.png"] and holdout.names_b == ["u.png"]


def test_semantic_reads_raw_ids_of_palette_grey_and_16_bit_labels(tmp_path):
    ids = np.array([[0, 1, 2, 255], [3, 3, 255, 0], [4, 1, 1, 2]], np.uint8)
    palette_png(tmp_path / "train" / "labels" / "p.png", ids)
    save(tmp_path / "train" / "labels" / "l.png", ids[::-1], "L")
    Image.fromarray(ids.astype(np.uint16)).save(tmp_path / "train" / "labels" / "w.png")
    for stem in ("p", "l", "w"):
        save(tmp_path / "train" / "images" / f"{stem}.jpg", rgb(3, 4, 0))
    save(tmp_path / "train" / "images" / "l.jpg", grey(3, 4, 1))
    data = read_translation(f"semantic:{tmp_path}", label_nc=5)
    assert data.kind == "semantic" and data.label_nc == data.a_channels == 5 and data.b_channels == 3
    assert data.names_a == ["l.png", "p.png", "w.png"] and data.names_b == ["l.jpg", "p.jpg", "w.jpg"]
    np.testing.assert_array_equal(data.a[0], ids[::-1])
    np.testing.assert_array_equal(data.a[1], ids)
    np.testing.assert_array_equal(data.a[2], ids)
    assert all(a.dtype == np.uint8 and a.ndim == 2 for a in data.a)
    assert all(b.shape == (3, 4, 3) for b in data.b)  # the grey image became RGB


def test_semantic_label_maps_follow_exif_orientation_like_their_photos(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    ids = np.zeros((4, 6), np.uint8)
    ids[:, :2] = 1
    for folder in ("labels", "images"):
        (tmp_path / folder).mkdir()
    Image.fromarray(ids, "L").save(tmp_path / "labels" / "x.png", exif=exif.tobytes())
    Image.fromarray(np.repeat(ids[:, :, None] * 200, 3, axis=2)).save(tmp_path / "images" / "x.png",
                                                                      exif=exif.tobytes())
    data = read_translation(f"semantic:{tmp_path}", label_nc=2)
    assert data.a[0].shape == (6, 4) == data.b[0].shape[:2]
    np.testing.assert_array_equal(data.a[0] * 200, data.b[0][:, :, 0])


def test_semantic_flat_folders(tmp_path):
    palette_png(tmp_path / "labels" / "a.png", np.zeros((3, 3)))
    save(tmp_path / "images" / "a.png", rgb(3, 3, 0))
    assert len(read_translation(f"semantic:{tmp_path}", label_nc=2).a) == 1


# ----------------------------------------------------------------------------- validation errors


def test_missing_partner_names_the_file(tmp_path):
    save(tmp_path / "A" / "x.png", rgb(4, 4, 0))
    save(tmp_path / "A" / "lonely.png", rgb(4, 4, 0))
    save(tmp_path / "B" / "x.png", rgb(4, 4, 1))
    with pytest.raises(UserError, match="no partner in .*B.* for .*lonely.png"):
        read_translation(f"aligned:{tmp_path}")
    (tmp_path / "A" / "lonely.png").unlink()
    save(tmp_path / "B" / "orphan.png", rgb(4, 4, 1))
    with pytest.raises(UserError, match="no partner in .*A.* for .*orphan.png"):
        read_translation(f"aligned:{tmp_path}")


def test_size_mismatch_names_both_files_and_sizes(tmp_path):
    save(tmp_path / "A" / "x.png", rgb(4, 6, 0))
    save(tmp_path / "B" / "x.png", rgb(5, 6, 1))
    with pytest.raises(UserError, match=r"A/x.png' is 6x4 but its partner '.*B/x.png' is 6x5"):
        read_translation(f"aligned:{tmp_path}")


def test_semantic_size_mismatch(tmp_path):
    palette_png(tmp_path / "labels" / "a.png", np.zeros((3, 3)))
    save(tmp_path / "images" / "a.png", rgb(3, 4, 0))
    with pytest.raises(UserError, match=r"labels/a.png' is 3x3 but its image '.*images/a.png' is 4x3"):
        read_translation(f"semantic:{tmp_path}", label_nc=2)


def test_class_id_at_or_above_label_nc_is_reported_with_id_and_file(tmp_path):
    ids = np.array([[0, 1], [255, 9]])
    palette_png(tmp_path / "labels" / "bad.png", ids)
    save(tmp_path / "images" / "bad.png", rgb(2, 2, 0))
    with pytest.raises(UserError, match=r"bad.png' has class id 9 >= label_nc 8"):
        read_translation(f"semantic:{tmp_path}", label_nc=8)
    assert read_translation(f"semantic:{tmp_path}", label_nc=10).a[0][1, 0] == 255  # don't care kept


def test_wide_ids_in_16_bit_label_maps_are_reported(tmp_path):
    Image.fromarray(np.array([[0, 300]], np.uint16)).save(tmp_path / "w.png")
    (tmp_path / "labels").mkdir()
    (tmp_path / "w.png").rename(tmp_path / "labels" / "w.png")
    save(tmp_path / "images" / "w.png", rgb(1, 2, 0))
    with pytest.raises(UserError, match="w.png' has class id 300"):
        read_translation(f"semantic:{tmp_path}", label_nc=8)


def test_rgb_label_map_is_refused(tmp_path):
    save(tmp_path / "labels" / "c.png", rgb(3, 3, 0))
    save(tmp_path / "images" / "c.png", rgb(3, 3, 0))
    with pytest.raises(UserError, match="c.png' is RGB, not single-channel"):
        read_translation(f"semantic:{tmp_path}", label_nc=8)


def test_semantic_needs_label_nc(tmp_path):
    with pytest.raises(UserError, match="needs label_nc"):
        read_translation(f"semantic:{tmp_path}")
    with pytest.raises(UserError, match="label_nc must be"):
        read_translation(f"semantic:{tmp_path}", label_nc=0)


def test_odd_width_ab_image(tmp_path):
    save(tmp_path / "odd.png", rgb(4, 7, 0))
    with pytest.raises(UserError, match="odd.png' is 7x4.*even width"):
        read_translation(f"aligned:{tmp_path}")


def test_unreadable_image_is_an_error_not_a_skip(tmp_path):
    save(tmp_path / "A" / "x.png", rgb(4, 4, 0))
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "x.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="x.png"):
        read_translation(f"aligned:{tmp_path}")
    (tmp_path / "labels").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "labels" / "x.png").write_bytes(b"junk")
    save(tmp_path / "images" / "x.png", rgb(4, 4, 0))
    with pytest.raises(UserError, match="bad label map .*labels/x.png"):
        read_translation(f"semantic:{tmp_path}", label_nc=3)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    with pytest.raises(UserError, match="no images in"):
        read_translation(f"aligned:{tmp_path}")
    with pytest.raises(UserError, match="no images in .*empty"):
        (tmp_path / "empty").mkdir()
        read_translation(f"aligned:{tmp_path / 'empty'}")
    with pytest.raises(UserError, match="nowhere' does not exist"):
        read_translation(f"aligned:{tmp_path / 'nowhere'}")
    save(tmp_path / "u" / "trainA" / "a.png", rgb(2, 2, 0))
    with pytest.raises(UserError, match="trainB' does not exist"):
        read_translation(f"unaligned:{tmp_path / 'u'}")
    (tmp_path / "u" / "trainB").mkdir()
    with pytest.raises(UserError, match="no images in .*trainB"):
        read_translation(f"unaligned:{tmp_path / 'u'}")
    with pytest.raises(UserError, match="testA' does not exist"):
        read_translation(f"unaligned:{tmp_path / 'u'}", "holdout")
    save(tmp_path / "s" / "train" / "labels" / "a.png", np.zeros((2, 2), np.uint8), "L")
    with pytest.raises(UserError, match="images' does not exist"):
        read_translation(f"semantic:{tmp_path / 's'}", label_nc=2)
    with pytest.raises(UserError, match="no 'test' or 'val'"):
        read_translation(f"semantic:{tmp_path / 's'}", "holdout", label_nc=2)


# ----------------------------------------------------------------------------- training batches


def ramp_pairs():
    """A with values rising left to right (so a flip shows), B = 255 - A as RGB."""
    rng = np.random.default_rng(0)
    a = []
    for h, w in ((40, 60), (50, 40)):
        columns = np.linspace(0, 250, w)[None, :] + rng.integers(0, 5, (h, w))
        a.append(np.clip(columns, 0, 255).astype(np.uint8)[:, :, None])
    b = [np.repeat(255 - x, 3, axis=2) for x in a]
    return paired(a, b)


def test_patches_are_a_pure_function_of_seed_step_and_rank():
    data = ramp_pairs()

    def make(seed, rank=0):
        return TranslationPatches(data, patch_size=16, batch_size=4, seed=seed, rank=rank)

    first, again = make(3).batch(5), make(3).batch(5)
    assert all(torch.equal(first[k], again[k]) for k in ("a", "b"))
    assert not torch.equal(first["a"], make(3).batch(6)["a"])
    assert not torch.equal(first["a"], make(4).batch(5)["a"])
    assert not torch.equal(first["a"], make(3, rank=1).batch(5)["a"])


def test_paired_crops_stay_aligned_through_flips_and_jitter():
    data = ramp_pairs()
    patches = TranslationPatches(data, patch_size=16, batch_size=8, seed=0, scale_jitter=(1.0, 0.5))
    flipped = unflipped = 0
    for step in range(6):
        batch = patches.batch(step)
        a, b = batch["a"], batch["b"]
        assert a.shape == (8, 1, 16, 16) and b.shape == (8, 3, 16, 16)
        assert a.dtype == b.dtype == torch.float32 and a.min() >= -1 and a.max() <= 1 and b.min() >= -1
        torch.testing.assert_close(b, (-a).expand(-1, 3, -1, -1), rtol=0, atol=1e-6)  # B = 255 - A
        slope = (a[:, 0, :, -4:].mean(dim=(1, 2)) - a[:, 0, :, :4].mean(dim=(1, 2)))
        flipped += int((slope < 0).sum())
        unflipped += int((slope > 0).sum())
    assert flipped and unflipped
    no_flips = TranslationPatches(data, patch_size=16, batch_size=16, seed=0, flips=False).batch(0)["a"]
    assert (no_flips[:, 0, :, -4:].mean(dim=(1, 2)) > no_flips[:, 0, :, :4].mean(dim=(1, 2))).all()


def test_semantic_batches_keep_ids_dont_care_and_alignment():
    rng = np.random.default_rng(1)
    labels = [rng.choice(np.array([0, 1, 2, 255], np.uint8), (30, 36)) for _ in range(2)]
    palette = np.zeros((256, 3), np.uint8)
    palette[[0, 1, 2, 255]] = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [255, 255, 255]]
    data = TranslationData("semantic", labels, [palette[x] for x in labels], ["l0", "l1"], ["i0", "i1"], 3, 3,
                           label_nc=3)
    patches = TranslationPatches(data, patch_size=12, batch_size=6, seed=2, scale_jitter=(1.0, 0.5))
    batch = patches.batch(0)
    label, b = batch["label"], batch["b"]
    assert set(batch) == {"label", "b"} and label.dtype == torch.int64 and label.shape == (6, 12, 12)
    assert b.shape == (6, 3, 12, 12)
    assert set(label.unique().tolist()) <= {0, 1, 2, 255} and 255 in label.unique().tolist()
    expected = torch.from_numpy(palette)[label].permute(0, 3, 1, 2).float() / 127.5 - 1
    for step in range(1, 4):  # downscaled copies come in too: nearest keeps ids, images agree
        batch = patches.batch(step)
        assert set(batch["label"].unique().tolist()) <= {0, 1, 2, 255}
    torch.testing.assert_close(b, expected)


def test_unpaired_domains_are_drawn_independently():
    images = [np.full((20, 20, 3), 10 * i, np.uint8) + np.arange(20, dtype=np.uint8)[:, None, None]
              for i in range(6)]
    data = TranslationData("unpaired", images, [x.copy() for x in images], list("abcdef"), list("abcdef"), 3, 3)
    batch = TranslationPatches(data, patch_size=8, batch_size=32, seed=0, flips=False).batch(0)
    assert batch["a"].shape == batch["b"].shape == (32, 3, 8, 8)
    # identical domains: if draws were shared the batches would be equal
    assert not torch.equal(batch["a"], batch["b"])
    assert (batch["a"] != batch["b"]).flatten(1).any(dim=1).float().mean() > 0.5


def test_small_images_are_skipped_with_a_warning(caplog):
    data = paired([grey(8, 8, 0), grey(20, 20, 1)], [rgb(8, 8, 0), rgb(20, 20, 1)], ["tiny", "big"])
    with caplog.at_level(logging.WARNING):
        patches = TranslationPatches(data, patch_size=16, batch_size=2, seed=0)
    assert "1 pair(s) smaller than patch_size 16" in caplog.text and "tiny" in caplog.text
    assert patches.batch(0)["a"].shape == (2, 1, 16, 16)
    with pytest.raises(UserError, match="patch_size 32"):
        TranslationPatches(data, patch_size=32, batch_size=2, seed=0)
    unpaired = TranslationData("unpaired", [rgb(20, 20, 0)], [rgb(8, 8, 0)], ["a"], ["b"], 3, 3)
    with pytest.raises(UserError, match="domain B image.*patch_size 16"):
        TranslationPatches(unpaired, patch_size=16, batch_size=2, seed=0)


def test_patches_of_a_bundled_set():
    batch = TranslationPatches(read_translation("labels2photos"), patch_size=64, batch_size=3, seed=0).batch(0)
    assert batch["label"].shape == (3, 64, 64) and batch["label"].max() < LABEL_NC
    assert batch["b"].shape == (3, 3, 64, 64) and -1 <= batch["b"].min() and batch["b"].max() <= 1


# ----------------------------------------------------------------------------- holdout pairs


def test_holdout_pairs_are_centre_crops_rounded_to_the_multiple():
    data = ramp_pairs()  # 40x60 and 50x40
    pairs = holdout_pairs(data, size=64, multiple=8)
    assert [p["a"].shape for p in pairs] == [(1, 1, 40, 40), (1, 1, 40, 40)]
    assert [p["b"].shape for p in pairs] == [(1, 3, 40, 40), (1, 3, 40, 40)]
    pairs = holdout_pairs(data, size=30, count=1, multiple=4)
    assert len(pairs) == 1 and pairs[0]["a"].shape == (1, 1, 28, 28)
    expected = torch.from_numpy(data.a[0][6:34, 16:44, 0].astype(np.float32)) / 127.5 - 1
    torch.testing.assert_close(pairs[0]["a"][0, 0], expected)
    torch.testing.assert_close(pairs[0]["b"], (-pairs[0]["a"]).expand(-1, 3, -1, -1), rtol=0, atol=1e-6)


def test_holdout_pairs_of_unpaired_and_semantic_data():
    poster = read_translation("photo2poster", "holdout")
    pairs = holdout_pairs(poster, size=32)
    assert len(pairs) == 3 and set(pairs[0]) == {"a", "b"}
    a = ((pairs[0]["a"][0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    h, w = poster.a[0].shape[:2]
    top, left = (h - 32) // 2, (w - 32) // 2
    truth = poster.truth[0][top : top + 32, left : left + 32]
    b = ((pairs[0]["b"][0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(b, truth)
    np.testing.assert_array_equal(a, poster.a[0][top : top + 32, left : left + 32])
    unknown = TranslationData("unpaired", [rgb(10, 12, 0)], [rgb(9, 9, 1)], ["a"], ["b"], 3, 3)
    assert list(holdout_pairs(unknown, size=8)[0]) == ["a"]
    labels = read_translation("labels2photos", "holdout")
    pairs = holdout_pairs(labels, size=48, count=2, multiple=16)
    assert len(pairs) == 2 and set(pairs[0]) == {"label", "b"}
    assert pairs[0]["label"].shape == (1, 48, 48) and pairs[0]["label"].dtype == torch.int64
    assert pairs[0]["b"].shape == (1, 3, 48, 48)
