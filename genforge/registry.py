"""The registries: every network, task and inference wrapper, declared once by its family.

A family registers its rows with the decorators below, in its own files, when those files are
imported; genforge/families.py is the one explicit list of them (never discovery by file name).
The config unions, train, export, serve, load and evaluate read these rows and branch on no kind,
as timm derives list_models() from its @register_model rows."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from genforge.errors import UserError


@dataclass(frozen=True)
class ModelRow:
    name: str                   # model.name in a config
    config: type                # its pydantic config class (with name: Literal[name])
    build: Callable             # config -> the network (the one deployment receives, by default)
    tiny: dict = field(default_factory=dict)  # overrides giving a seconds-sized instance, for the tests


@dataclass(frozen=True)
class TaskRow:
    kind: str                   # task.kind in a config
    config: type                # its pydantic config class (with kind: Literal[kind])
    task: type                  # the Task subclass: task(cfg, device); task.setup(cfg, dist) reads the data
    models: tuple[str, ...]     # the model.name values it trains
    family: str                 # the inference wrapper (and model-folder "task") its exports get
    export: Callable | None = None  # model config -> deployed network, when it is not the model's own build
    tiny: dict = field(default_factory=dict)  # run-config sections for a seconds-long training (tests)

    def export_network(self, model_cfg):
        return (self.export or model_row(model_cfg.name).build)(model_cfg)


@dataclass(frozen=True)
class WrapperRow:
    family: str                 # "generation", "super-resolution", "translation", ...
    wrapper: type               # the inference wrapper class (deploy/infer.py: InferenceWrapper)


_MODELS: dict[str, ModelRow] = {}
_TASKS: dict[str, TaskRow] = {}
_WRAPPERS: dict[str, WrapperRow] = {}
_loaded = False


def _add(table: dict, key: str, row) -> None:
    if key in table:
        raise ValueError(f"{key!r} is registered twice")
    table[key] = row


def register_model(name: str, config: type, *, tiny: dict | None = None):
    """Decorates the build function (or network class) of a model family member."""
    def add(build):
        _add(_MODELS, name, ModelRow(name, config, build, dict(tiny or {})))
        return build
    return add


def register_task(kind: str, config: type, *, models: tuple[str, ...], family: str,
                  export: Callable | None = None, tiny: dict | None = None):
    """Decorates a Task subclass."""
    def add(task):
        _add(_TASKS, kind, TaskRow(kind, config, task, tuple(models), family, export, dict(tiny or {})))
        return task
    return add


def register_wrapper(family: str):
    """Decorates the inference wrapper class of a family."""
    def add(wrapper):
        _add(_WRAPPERS, family, WrapperRow(family, wrapper))
        wrapper.family = family
        return wrapper
    return add


def load() -> None:
    """Import every family's modules (genforge/families.py) once, which fills the registries."""
    global _loaded
    if not _loaded:
        _loaded = True
        from genforge.families import FAMILIES
        for modules in FAMILIES.values():
            for module in modules:
                importlib.import_module(module)


def models() -> dict[str, ModelRow]:
    load()
    return dict(_MODELS)


def tasks() -> dict[str, TaskRow]:
    load()
    return dict(_TASKS)


def wrappers() -> dict[str, WrapperRow]:
    load()
    return dict(_WRAPPERS)


def _row(table: dict, key: str, what: str):
    load()
    if key not in table:
        raise UserError(f"unknown {what} {key!r} (known: {', '.join(table)})")
    return table[key]


def model_row(name: str) -> ModelRow:
    return _row(_MODELS, name, "network")


def task_row(kind: str) -> TaskRow:
    return _row(_TASKS, kind, "task kind")


def wrapper_row(family: str) -> WrapperRow:
    return _row(_WRAPPERS, family, "task family (no inference wrapper)")


def family_of(task_kind: str) -> str:
    return task_row(task_kind).family


def trainable_pairs() -> list[tuple[str, str]]:
    """(task kind, model name) for every model every task trains: what the shared tests loop over."""
    return [(kind, name) for kind, row in tasks().items() for name in row.models]


def build_task(cfg, device):
    """The Task a resolved run config trains."""
    return task_row(cfg.task.kind).task(cfg, device)
