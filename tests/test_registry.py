"""One test over every registered model, generated from the registry (as timm loops over
list_models()): for every task and every model it trains, a tiny config validates and passes the
family's data checks, the deployed network gives finite outputs of the right shape, a model folder
round-trips through genforge.load, ONNX export matches PyTorch in ONNX Runtime, and `init:` starts
the task from the folder's weights. Registering a model that breaks any of this fails here."""

from typing import get_args

import pytest
import torch
from safetensors.torch import load_file

import genforge
from genforge import registry
from genforge.deploy.export import export_onnx
from genforge.engine.distributed import Dist
from genforge.errors import ConfigError
from genforge.tasks.base import Task
from genforge.train import init_weights
from tests.conftest import random_folder, tiny_config

PAIRS = registry.trainable_pairs()


def test_registries_are_consistent():
    models, tasks, wrappers = registry.models(), registry.tasks(), registry.wrappers()
    for name, row in models.items():
        assert row.config.model_fields["name"].default == name, name
        assert get_args(row.config.model_fields["name"].annotation) == (name,), name
    for kind, row in tasks.items():
        assert row.config.model_fields["kind"].default == kind, kind
        assert row.models and set(row.models) <= set(models), kind
        assert row.family in wrappers, kind
        assert row.task.setup.__func__ is not Task.setup.__func__, f"{kind}: no data setup"
    trained = {name for _, name in PAIRS}
    assert trained == set(models), f"models no task trains: {set(models) - trained}"
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_model("dcgan", models["dcgan"].config)(lambda cfg: None)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """kind/name -> (config, random-weight export network, model folder)."""
    root = tmp_path_factory.mktemp("registry")
    out = {}
    for kind, name in PAIRS:
        cfg = tiny_config(kind, name)
        folder = random_folder(root, kind, name)
        net = registry.task_row(kind).export_network(cfg.model).eval()
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
        out[kind, name] = cfg, net, folder
    return out


@pytest.mark.parametrize("kind,name", PAIRS, ids=[f"{k}-{n}" for k, n in PAIRS])
def test_every_registered_model(kind, name, folders, tmp_path):
    cfg, net, folder = folders[kind, name]
    row = registry.task_row(kind)
    batches, callbacks, _ = row.task.setup(cfg, Dist())  # the family's data checks pass on the tiny config
    assert batches.batch(0) and isinstance(callbacks(tmp_path), list)

    wrapper_class = registry.wrapper_row(row.family).wrapper
    signature = wrapper_class.onnx_signature(net, torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(*signature.inputs)
    assert tuple(out.shape) == tuple(signature.output_shape(*signature.inputs))
    assert torch.isfinite(out).all()

    loaded = genforge.load(str(folder), device="cpu")
    assert type(loaded) is wrapper_class and loaded.describe()["task"] == row.family
    with torch.no_grad():
        assert torch.allclose(loaded.module(*signature.inputs), out, atol=1e-5)

    onnx = export_onnx(str(folder), tmp_path / "m.onnx")  # raises unless ONNX Runtime matches PyTorch
    assert max(onnx["max_abs_diff"].values()) <= 1e-4
    assert type(genforge.load(str(tmp_path / "m.onnx"))) is wrapper_class


@pytest.mark.parametrize("kind,name", PAIRS, ids=[f"{k}-{n}" for k, n in PAIRS])
def test_init_starts_every_family_from_a_folder(kind, name, folders):
    cfg, net, folder = folders[kind, name]
    cfg = cfg.model_copy(update={"init": str(folder)})
    task = registry.build_task(cfg, torch.device("cpu"))
    init_weights(task, cfg)
    for key, value in net.state_dict().items():
        assert torch.equal(task.trained_network().state_dict()[key], value), key
    if task.ema is not None:
        assert torch.equal(next(task.ema.module.parameters()), next(net.parameters()))


def test_init_from_another_network_is_one_line(folders):
    cfg, _, _ = folders["gan", "dcgan"]
    other = folders["superres", "isrnet"][2]
    cfg = cfg.model_copy(update={"init": str(other)})
    with pytest.raises(ConfigError, match="holds a different network"):
        init_weights(registry.build_task(cfg, torch.device("cpu")), cfg)
    # same network, a task whose deployed weights differ: CycleGAN's pair from a Pix2Pix generator
    cfg, _, _ = folders["cyclegan", "unet"]
    p2p = tiny_config("pix2pix", "unet", init=None)
    pair_cfg = cfg.model_copy(update={"model": p2p.model, "init": str(folders["pix2pix", "unet"][2])})
    with pytest.raises(ConfigError, match="do not fit a cyclegan task"):
        init_weights(registry.build_task(pair_cfg, torch.device("cpu")), pair_cfg)
