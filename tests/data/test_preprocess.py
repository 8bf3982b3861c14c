"""data.direction and data.preprocess/load_size/crop_size on a user's own pairs of mixed sizes
(generated here), and the dataset summary line training starts with."""

import json
import warnings

import numpy as np
import pytest

from genforge.config import validate
from genforge.data.io import write_image
from genforge.data.pair_folders import TranslationData, read_translation
from genforge.data.patches import TranslationPatches
from genforge.data.preprocess import apply_direction, preprocess_translation, read_run_data
from genforge.errors import ConfigError, UserError
from genforge.train import train
from tests.conftest import translation_raw

SIZES = {"big": (40, 40), "small": (12, 20), "wide": (48, 64)}  # (height, width); "small" < 16 px crops


def image(h: int, w: int, channels: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).integers(0, 256, (h, w, channels)).astype(np.uint8)
    return x[:, :, 0] if channels == 1 else x


@pytest.fixture
def pairs(tmp_path):
    """aligned:PATH with A/ (grey) and B/ (RGB) of three sizes, partners of equal size."""
    for i, (name, (h, w)) in enumerate(SIZES.items()):
        write_image(tmp_path / "A" / f"{name}.png", image(h, w, 1, i))
        write_image(tmp_path / "B" / f"{name}.png", image(h, w, 3, 10 + i))
    return tmp_path


def shapes(images):
    return [x.shape[:2] for x in images]


def test_preprocess_modes_resize_instead_of_dropping(pairs):
    data = read_translation(f"aligned:{pairs}")
    assert shapes(data.a) == [SIZES["big"], SIZES["small"], SIZES["wide"]]
    out, summary = preprocess_translation(data, "crop", load_size=None, crop_size=16)
    assert shapes(out.a) == shapes(out.b) == [(40, 40), (16, 27), (48, 64)]  # only the small one, aspect kept
    assert (summary.found, summary.resized, summary.refused) == (3, 1, 0)
    out, summary = preprocess_translation(data, "none", load_size=None, crop_size=16)
    assert shapes(out.a) == shapes(data.a) and (summary.resized, summary.refused) == (0, 1)
    out, summary = preprocess_translation(data, "resize_and_crop", load_size=24, crop_size=16)
    assert shapes(out.a) == shapes(out.b) == [(24, 24)] * 3 and summary.resized == 3
    out, summary = preprocess_translation(data, "scale_width_and_crop", load_size=32, crop_size=16)
    assert shapes(out.a) == [(32, 32), (19, 32), (24, 32)] and shapes(out.b) == shapes(out.a)
    assert out.a[0].shape[2] == 1 and out.b[0].shape[2] == 3 and out.a[0].dtype == np.uint8
    assert summary.line("aligned:X", "train", "AtoB", "scale_width_and_crop") == \
        "dataset aligned:X (train, AtoB, preprocess scale_width_and_crop): 3 pairs found, 3 resized, 0 refused"
    with pytest.raises(ConfigError, match="data.load_size: 8 is smaller than the crop size 16"):
        preprocess_translation(data, "resize_and_crop", load_size=8, crop_size=16)
    # every preprocessed set gives crops of the configured side
    for mode in ("crop", "resize_and_crop", "scale_width_and_crop"):
        out, _ = preprocess_translation(data, mode, load_size=32, crop_size=16)
        batch = TranslationPatches(out, patch_size=16, batch_size=4, seed=0).batch(0)
        assert batch["a"].shape == (4, 1, 16, 16) and batch["b"].shape == (4, 3, 16, 16)


def test_pairs_of_different_sizes_are_still_refused_by_name(pairs):
    write_image(pairs / "A" / "odd.png", image(20, 20, 1, 7))
    write_image(pairs / "B" / "odd.png", image(20, 24, 3, 7))
    with pytest.raises(UserError, match=r"A/odd.png' is 20x20 but its partner '.*B/odd.png' is 24x20"):
        read_translation(f"aligned:{pairs}")


def test_label_maps_are_resized_by_nearest_neighbours():
    ids = np.array([[0, 1], [2, 255]], np.uint8)
    photo = np.zeros((2, 2, 3), np.uint8)
    data = TranslationData("semantic", [ids], [photo], ["m"], ["m"], 3, 3, label_nc=3)
    out, summary = preprocess_translation(data, "resize_and_crop", load_size=20, crop_size=16)
    assert out.a[0].shape == (20, 20) and set(np.unique(out.a[0])) == {0, 1, 2, 255} and summary.resized == 1
    assert out.b[0].shape == (20, 20, 3)


def test_direction_swaps_aligned_and_unaligned_sides(pairs):
    data = read_translation(f"aligned:{pairs}")
    swapped = apply_direction(data, "BtoA", "x")
    assert swapped.a_channels == 3 and swapped.b_channels == 1 and swapped.a[0] is data.b[0]
    assert apply_direction(data, "AtoB", "x") is data
    poster = read_translation("photo2poster")
    flipped = apply_direction(poster, "BtoA", "photo2poster")
    assert flipped.names_a == poster.names_b and flipped.truth is None  # the known mapping goes A -> B
    with pytest.raises(ConfigError, match="BtoA does not apply to semantic data"):
        apply_direction(read_translation("labels2photos"), "BtoA", "labels2photos")


def test_run_config_reads_its_direction_and_preprocess(pairs):
    run = {"data": {"dataset": f"aligned:{pairs}", "direction": "BtoA", "preprocess": "resize_and_crop",
                    "load_size": 24}, "model": {"name": "unet"}, "task": {"patch_size": 16}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = read_run_data(run, "train")
    assert data.a_channels == 3 and shapes(data.a) == [(24, 24)] * 3
    old = {"data": {"dataset": f"aligned:{pairs}"}, "model": {"name": "unet"}, "task": {"patch_size": 16}}
    assert shapes(read_run_data(old, "train").a)[1] == (16, 27)  # a folder saved before the keys: crop


def test_crop_size_is_the_patch_size():
    raw = translation_raw("pix2pix")  # a preset-like config with task.patch_size 16
    raw["data"]["crop_size"] = 32
    cfg = validate(raw)
    assert cfg.task.patch_size == 32 and cfg.data.crop_size is None  # one crop side in the resolved config
    resumed = cfg.model_dump(mode="json")
    resumed["task"]["patch_size"] = 48  # what --resume --set task.patch_size=48 gives
    assert validate(resumed).task.patch_size == 48
    gan = {"name": "g", "data": {"dataset": "digits", "crop_size": 32}, "model": {"name": "dcgan"},
           "task": {"kind": "gan"}}
    with pytest.raises(ConfigError, match="crop_size applies to translation tasks"):
        validate(gan)
    raw["data"].update(direction="CtoD")
    with pytest.raises(ConfigError, match="data.direction"):
        validate(raw)


def test_training_on_mixed_sizes_prints_the_summary_and_no_warning(pairs, tmp_path, write_config, capsys):
    raw = translation_raw("pix2pix")
    raw["data"] = {"dataset": f"aligned:{pairs}", "preprocess": "crop"}
    raw["train"]["steps"] = 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = train(str(write_config(raw)), run_dir=str(tmp_path / "run"), progress=False)
    assert not [w for w in caught if "not writable" in str(w.message)]
    line = f"dataset aligned:{pairs} (train, AtoB, preprocess crop): 3 pairs found, 1 resized, 0 refused"
    assert line in capsys.readouterr().err
    events = [json.loads(x).get("message") for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert line in events

    raw["data"].update(direction="BtoA")  # B is RGB: the model's in/out channels must follow
    with pytest.raises(ConfigError, match="model.in_channels: is 1 but dataset .* has 3-channel A images"):
        train(str(write_config(raw)), run_dir=str(tmp_path / "run2"), progress=False)
    raw["model"].update(in_channels=3, out_channels=1)
    train(str(write_config(raw)), run_dir=str(tmp_path / "run3"), progress=False)
