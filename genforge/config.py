"""Run configuration: typed schemas, YAML loading, `--set a.b=c` overrides, one-line errors.

The model and task sections are the unions of the registered families' config classes
(genforge/registry.py); the shared sections are in genforge/schema.py. A resolved RunConfig is
saved in every run directory and checkpoint; it alone rebuilds the model."""

import reprlib
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import Field, ValidationError, model_validator

from genforge import registry
from genforge.errors import ConfigError
from genforge.schema import AugmentConfig, DataConfig, Optim, Strict, TrainConfig  # noqa: F401  (re-exported)


def _union(classes: list[type], tag: str):
    return Annotated[Union[tuple(classes)], Field(discriminator=tag)]  # noqa: UP007  (a runtime tuple)


ModelConfig = _union([row.config for row in registry.models().values()], "name")
TaskConfig = _union([row.config for row in registry.tasks().values()], "kind")


class RunConfig(Strict):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$", description="Prefix of the run directory.")
    seed: int = Field(0, ge=-2**63, lt=2**63, description="Seeds every RNG (torch takes 64-bit seeds).")
    data: DataConfig = DataConfig()
    model: ModelConfig
    task: TaskConfig
    train: TrainConfig = TrainConfig()
    init: str | None = Field(None, description="Run directory or model folder whose weights start the network.")

    @model_validator(mode="after")
    def _task_fits_model(self):
        trains = registry.task_row(self.task.kind).models
        if self.model.name not in trains:
            raise ValueError(f"task.kind {self.task.kind!r} cannot train model.name {self.model.name!r}"
                             f" (it trains: {', '.join(trains)})")
        return self

    @model_validator(mode="after")
    def _crop_size_is_the_patch(self):
        """data.crop_size (the pix2pix repository's name) sets the translation task's patch_size and
        is then dropped, so that the resolved config (and a resume of it) has one crop side only."""
        crop, task = self.data.crop_size, self.task
        if crop is None:
            return self
        if not getattr(task, "crop_from_data", False):
            raise ValueError(f"data.crop_size applies to translation tasks; task.kind {task.kind} crops by "
                             "task.patch_size")
        task.patch_size, self.data.crop_size = crop, None
        return self


# pydantic puts the union member's tag into an error's location (model.dcgan.width): dropped for messages
_UNION_TAGS = set(registry.models()) | set(registry.tasks())


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = [str(p) for i, p in enumerate(first["loc"]) if not (i == 1 and str(p) in _UNION_TAGS)]
    key = ".".join(loc) or "config"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif "input" in first and first["type"] not in ("value_error", "union_tag_invalid", "model_type"):
        msg = f"{msg} (got {_SHORT.repr(first['input'])})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"config error: {key}: {msg}{more}"


_SHORT = reprlib.Repr()  # a huge value (a YAML alias bomb) is quoted short
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 4, 60, 60


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently); keys brought in by a `<<` merge may be overridden, as YAML intends."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first given on line {first})", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506  (_Loader is a SafeLoader)


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"config error: --set {item!r}: expected KEY=VALUE, e.g. train.steps=100")
    key, raw = item.split("=", 1)
    if not key:
        raise ConfigError(f"config error: --set {item!r}: empty key")
    try:
        value = parse_yaml(raw) if raw != "" else ""
    except yaml.constructor.ConstructorError as err:
        raise ConfigError(f"config error: --set {item!r}: {err.problem}") from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"config error: --set {item}: {'.'.join(path[:i + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return raw


def validate(raw: dict) -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError("config error: the file must hold a mapping of sections (name, data, model, task, train)")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config error: no such config file: {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"config error: cannot read {path}: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"config error: {path} line {line}: not UTF-8 text "
                          f"(byte 0x{data[err.start]:02x}); save the file as UTF-8") from None
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        problem = getattr(err, "problem", "") or ""
        what = problem if problem.startswith("duplicate key") else "not valid YAML"
        raise ConfigError(f"config error: {path}{line}: {what}") from None
    return raw if raw is not None else {}


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"config error: {path}: expected a mapping of sections")
    return validate(apply_overrides(raw, list(overrides)))


def dump(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
