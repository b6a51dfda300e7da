"""The merge configuration: which models, with which weights, by which method, into which dtype.

Our YAML form (mergekit YAML is accepted too, see :mod:`skillmerge.merge.mergekit_yaml`)::

    method: task_arithmetic
    base_model: models/base             # θ_base (optional for linear / slerp)
    models:
      - model: runs/general             # an HF directory or a PEFT LoRA adapter directory
        weight: 1.0
      - model: runs/safety
        name: safety                    # optional label, used by overrides
        weight: 0.5
        parameters: {density: 0.7}      # per-model method parameters
    parameters: {}                      # method parameters (a per-model key here is every model's default)
    dtype: bfloat16                     # output dtype (default: each tensor's dtype in the base)
    seed: 0
    overrides:                          # later entries win; selected by a regex searched in the tensor name
      - {pattern: "embed_tokens|lm_head", models: [safety], weight: 0.2}

Relative model paths in a YAML file are resolved against the file's directory.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skillmerge.config_yaml import first_validation_error, read_yaml_mapping
from skillmerge.errors import UsageError
from skillmerge.merge.params import Number, field_names, validate_params

DTYPES = ("float32", "float16", "bfloat16")
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


class ModelEntry(BaseModel):
    """One model to merge: a path, its weight and its per-model method parameters."""

    model_config = ConfigDict(extra="forbid")

    model: str
    weight: Number = 1.0
    name: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.model


class Override(BaseModel):
    """Per-tensor settings for tensors whose name matches ``pattern`` (``re.search``).

    ``models`` restricts ``weight`` and per-model parameters to the entries with that name or path
    (default: every model). ``parameters`` may hold method-level and per-model keys.
    """

    model_config = ConfigDict(extra="forbid")

    pattern: str
    models: list[str] | None = None
    weight: Number | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a valid regular expression ({err})") from None
        return value

    def matches(self, tensor_name: str) -> bool:
        return re.search(self.pattern, tensor_name) is not None

    def applies_to(self, entry: ModelEntry) -> bool:
        return self.models is None or entry.model in self.models or entry.name in self.models


class MergeConfig(BaseModel):
    """A validated merge recipe. Method name and parameters are checked against the method registry."""

    model_config = ConfigDict(extra="forbid")

    method: str
    base_model: str | None = None
    models: list[ModelEntry] = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    dtype: Literal["float32", "float16", "bfloat16"] | None = None
    seed: int = 0
    device: str = "cpu"
    tokenizer_source: str = "base"
    chat_template: str | None = None
    overrides: list[Override] = Field(default_factory=list)
    max_shard_size: int | str = "2GiB"
    io_threads: int = Field(default=4, ge=1, le=64)

    @field_validator("max_shard_size")
    @classmethod
    def _size_parses(cls, value: int | str) -> int | str:
        parse_size(value)
        return value

    @model_validator(mode="after")
    def _check_against_method(self) -> MergeConfig:
        from skillmerge.merge.methods import get_method, list_methods

        try:
            method = get_method(self.method)
        except UsageError:
            known = ", ".join(m.name for m in list_methods())
            raise ValueError(f"method: unknown method {self.method!r} (known: {known})") from None
        if method.needs_base and self.base_model is None:
            raise ValueError(f"base_model: method {self.method} needs a base model")
        count = len(self.models)
        if count < method.min_models or (method.max_models is not None and count > method.max_models):
            upper = "" if method.max_models is None else f" and at most {method.max_models}"
            raise ValueError(f"models: method {self.method} takes at least {method.min_models}{upper} models")
        self.method_params()
        for i in range(count):
            self.model_params(i)
        names = [m.name for m in self.models if m.name is not None]
        if len(set(names)) != len(names):
            raise ValueError("models: two models have the same name")
        known = {m.model for m in self.models} | set(names)
        for j, override in enumerate(self.overrides):
            for selector in override.models or []:
                if selector not in known:
                    raise ValueError(f"overrides.{j}.models: {selector!r} names no model")
            self._split_override(j, override)
        return self

    def method_params(self, extra: dict[str, Any] | None = None, where: str = "parameters") -> Any:
        """The method's validated global parameters (plus ``extra``, e.g. from an override)."""
        method = self._method()
        globals_ = {k: v for k, v in self.parameters.items() if k in field_names(method.params)}
        return _validate(method.params, {**globals_, **(extra or {})}, where, self.method)

    def model_params(self, index: int, extra: dict[str, Any] | None = None) -> Any:
        """Model ``index``'s validated per-model parameters: top-level defaults, its own, then ``extra``."""
        method = self._method()
        defaults = {k: v for k, v in self.parameters.items() if k in field_names(method.model_params)}
        values = {**defaults, **self.models[index].parameters, **(extra or {})}
        return _validate(method.model_params, values, f"models.{index}.parameters", self.method)

    def split_override(self, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Override ``index``'s parameters split into (method-level, per-model) keys."""
        return self._split_override(index, self.overrides[index])

    def _split_override(self, index: int, override: Override) -> tuple[dict[str, Any], dict[str, Any]]:
        method = self._method()
        global_keys, model_keys = {}, {}
        for key, value in override.parameters.items():
            if key in field_names(method.params):
                global_keys[key] = value
            elif key in field_names(method.model_params):
                model_keys[key] = value
            else:
                raise ValueError(
                    f"overrides.{index}.parameters.{key}: not a parameter of method {self.method}"
                )
        self.method_params(global_keys, where=f"overrides.{index}.parameters")
        for i in range(len(self.models)):
            _validate(
                self._method().model_params,
                {**self.models[i].parameters, **model_keys},
                f"overrides.{index}.parameters",
                self.method,
            )
        return global_keys, model_keys

    def _method(self) -> Any:
        from skillmerge.merge.methods import get_method

        return get_method(self.method)

    @model_validator(mode="after")
    def _unknown_parameters(self) -> MergeConfig:
        method = self._method()
        allowed = field_names(method.params) | field_names(method.model_params)
        for key in self.parameters:
            if key not in allowed:
                raise ValueError(f"parameters.{key}: not a parameter of method {self.method}")
        return self

    @property
    def max_shard_bytes(self) -> int:
        return parse_size(self.max_shard_size)

    def resolve_paths(self, root: Path) -> MergeConfig:
        """A copy with relative model paths (and path-valued sources) made absolute against ``root``."""

        def fix(value: str | None, keywords: tuple[str, ...] = ()) -> str | None:
            if value is None or value in keywords or Path(value).is_absolute():
                return value
            return str((root / value).resolve())

        renamed = {m.model: fix(m.model) for m in self.models}
        models = [m.model_copy(update={"model": renamed[m.model]}) for m in self.models]
        overrides = [
            o.model_copy(update={"models": [renamed.get(s, s) for s in o.models]}) if o.models else o
            for o in self.overrides
        ]
        return self.model_copy(
            update={
                "base_model": fix(self.base_model),
                "models": models,
                "overrides": overrides,
                "tokenizer_source": fix(self.tokenizer_source, ("base", "union")),
                "chat_template": fix(self.chat_template, ("base",)),
            }
        )


def _validate(schema: type[BaseModel], values: dict[str, Any], where: str, method: str) -> Any:
    """The one validation path (:func:`validate_params`), as a ValueError so pydantic reports it in place."""
    try:
        return validate_params(schema, values, where, method)
    except UsageError as err:
        raise ValueError(str(err)) from None


def parse_size(value: int | str) -> int:
    """``2GiB``, ``500MB``, ``1e9`` or an int → bytes (positive)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", str(value))
        unit = match.group(2).upper() if match else ""
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"not a size: {value!r} (use e.g. 2GiB, 500MB or a byte count)")
        try:
            size = int(float(match.group(1)) * _SIZE_UNITS[unit])
        except ValueError:
            raise ValueError(f"not a size: {value!r}") from None
    if size <= 0 or not math.isfinite(size):
        raise ValueError(f"size must be positive, got {value!r}")
    return size


def config_from_dict(data: Any, source: str | Path = "<config>") -> MergeConfig:
    """Validate a parsed config (our form or mergekit's, detected by its ``merge_method`` key).

    Raises :class:`UsageError` with one line ``SOURCE: field: problem``.
    """
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a merge config must be a mapping, got {type(data).__name__}")
    if "merge_method" in data:
        from skillmerge.merge.mergekit_yaml import from_mergekit

        data = from_mergekit(data, source)
    try:
        return MergeConfig.model_validate(data)
    except ValidationError as err:
        raise UsageError(f"{source}: {first_validation_error(err)}") from None


def load_merge_config(path: str | Path) -> MergeConfig:
    """Read a merge config YAML (ours or mergekit's); relative paths are taken from the file's directory."""
    path = Path(path)
    data = read_yaml_mapping(path, "merge config")
    config = config_from_dict(data, path)
    root = path.resolve().parent
    _check_relative_paths(config, root, path)
    return config.resolve_paths(root)


def _check_relative_paths(config: MergeConfig, root: Path, source: Path) -> None:
    """A relative model path found under the working directory but not the YAML's folder: say the rule."""
    named = [("base_model", config.base_model)]
    named += [(f"models[{i}]", m.model) for i, m in enumerate(config.models)]
    for field, value in named:
        if value is None or Path(value).is_absolute() or (root / value).exists() or not Path(value).exists():
            continue  # (missing everywhere: the merge names the path it looked at)
        where = os.path.relpath(Path(value).resolve(), root)
        raise UsageError(
            f"{source}: {field}: {value!r} is not in {root} (relative paths in a merge YAML are read from "
            f"the YAML's folder, not the working directory); write {where!r} or an absolute path"
        )
