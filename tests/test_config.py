import pytest

from genforge import config as C
from genforge import registry
from genforge.engine.distributed import Dist
from genforge.errors import ConfigError
from tests.conftest import ROOT, tiny_raw

PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=[p.name for p in PRESETS])
def test_every_preset_validates(path):
    """Schema and the family's data checks (its Task.setup), as `genforge train` runs them."""
    cfg = C.load_config(path)
    assert cfg.name == path.stem
    batches, _, _ = registry.task_row(cfg.task.kind).task.setup(cfg, Dist())
    assert batches.batch(0)


def test_presets_exist():
    names = {p.stem for p in PRESETS}
    assert {"gan_digits", "wgan_digits", "wgangp_digits", "cgan_digits", "vae_digits"} <= names


def test_override_and_roundtrip(write_config):
    cfg = C.load_config(write_config(tiny_raw()), ["train.steps=11", "task.loss=hinge", "model.width=4"])
    assert (cfg.train.steps, cfg.task.loss, cfg.model.width) == (11, "hinge", 4)
    again = C.validate(__import__("yaml").safe_load(C.dump(cfg)))
    assert again == cfg


@pytest.mark.parametrize("override, expected", [
    ("train.stepz=3", "config error: train.stepz: unknown key"),
    ("train.steps=abc", "config error: train.steps: Input should be a valid integer"),
    ("train.steps=0", "config error: train.steps: Input should be greater than or equal to 1"),
    ("model.image_size=12", "config error: model.image_size: Value error, must be a power of two"),
    ("task.loss=wasserstein", "config error: task.loss: Input should be"),
    ("model.activation=relu", "config error: model.activation: unknown key"),
    ("train", "expected KEY=VALUE"),
])
def test_bad_values_name_the_key(write_config, override, expected):
    with pytest.raises(ConfigError) as err:
        C.load_config(write_config(tiny_raw()), [override])
    assert str(err.value).startswith(expected) or expected in str(err.value)
    assert "\n" not in str(err.value)
    assert err.value.exit_code == 2


def test_task_must_fit_model(write_config):
    raw = tiny_raw()
    raw["task"] = {"kind": "vae"}
    with pytest.raises(ConfigError, match="cannot train model.name 'dcgan'"):
        C.load_config(write_config(raw))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        C.load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        C.load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        C.load_config(lst)
