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
    compute_dtype: float32              # the method's arithmetic: float32 (default) or dtype (as mergekit)
    seed: 0
    overrides:                          # later entries win; selected by a regex searched in the tensor name
      - {pattern: "embed_tokens|lm_head", models: [safety], weight: 0.2}

Relative model paths in a YAML file are resolved against the file's directory.

Precision (``compute_dtype``): by default every tensor is converted to float32, merged in float32 and cast
to ``dtype`` once, the most accurate choice. ``compute_dtype: dtype`` (or ``float16`` / ``bfloat16``)
reproduces mergekit, which computes in its ``dtype`` (without ``dtype``: each tensor's dtype in the
base): the inputs are rounded to that dtype and the method's
arithmetic runs in it, in mergekit's order of operations (measured against mergekit 0.1.5, see
tests/test_mergekit_parity.py): task vectors θ_i − θ_base in the dtype, Σ_i w_i·τ_i as one reduction over the
stacked weighted vectors (weights rounded to the dtype), TIES' top-k ties broken as torch's descending sort
breaks them, while slerp rounds only its inputs and computes its angle and mix in float32. Use it to rebuild a
published half-precision mergekit merge bit for bit; it is less accurate than the default. A mergekit
YAML's ``out_dtype`` becomes our ``dtype``: when it differs from mergekit's ``dtype``, name that one here.

Gradients: any weight or numeric parameter (in ``models``, ``parameters``, ``overrides`` or ``slices``) may be
a list of numbers, interpolated over the layers (:mod:`skillmerge.merge.gradients`): ``t: [0, 0.5, 1]``.

Slices (layer ranges; :mod:`skillmerge.merge.slices`) replace ``models``; the output stacks the slices'
layers in order, each slice merged from its sources by ``method``::

    method: slerp                       # or passthrough, one source per slice: a "frankenmerge"
    slices:
      - sources:
          - {model: a, layer_range: [0, 4]}        # layers 0..3 of a (end exclusive)
          - {model: b, layer_range: [0, 4], weight: 0.5, parameters: {}}
        parameters: {t: [0, 1]}         # this slice's parameters (over the top-level ones)
        overrides: [{pattern: mlp, parameters: {t: 0.3}}]   # after the top-level overrides

Per tensor and model a value is, from weakest to strongest: top-level ``parameters``, the slice's
``parameters``, the entry's own ``weight``/``parameters``, matching top-level ``overrides``, matching slice
``overrides``. With a base_model (for the methods that use one) every slice lists it among its sources,
with the layer range it reads. Embeddings come from the first slice's sources, the final norm and output
head from the last slice's; ``models`` is then filled in with the distinct source models.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skillmerge.config_yaml import first_validation_error, read_yaml_mapping
from skillmerge.errors import UsageError
from skillmerge.merge.gradients import knot_variants, values_at
from skillmerge.merge.params import Number, field_names, validate_params

Gradient = Annotated[list[Number], Field(min_length=1)]
"""A list of numbers interpolated over the layers (see :mod:`skillmerge.merge.gradients`)."""
WeightValue = Number | Gradient

DTYPES = ("float32", "float16", "bfloat16")
COMPUTE_DTYPES = ("float32", "float16", "bfloat16", "dtype")
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


class ModelEntry(BaseModel):
    """One model to merge: a path, its weight and its per-model method parameters."""

    model_config = ConfigDict(extra="forbid")

    model: str
    weight: WeightValue = 1.0
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
    weight: WeightValue | None = None
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


class SliceSource(ModelEntry):
    """One input of a slice: a model's layers ``layer_range`` = [start, end) (end exclusive)."""

    layer_range: tuple[int, int]

    @field_validator("layer_range")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        start, end = value
        if start < 0 or end <= start:
            raise ValueError(f"needs 0 <= start < end, got [{start}, {end}]")
        return value


class Slice(BaseModel):
    """A run of output layers merged from its sources' layer ranges (all of the same length)."""

    model_config = ConfigDict(extra="forbid")

    sources: list[SliceSource] = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    overrides: list[Override] = Field(default_factory=list)

    @property
    def length(self) -> int:
        start, end = self.sources[0].layer_range
        return end - start


class MergeConfig(BaseModel):
    """A validated merge recipe. Method name and parameters are checked against the method registry."""

    model_config = ConfigDict(extra="forbid")

    method: str
    base_model: str | None = None
    models: list[ModelEntry] = Field(min_length=1)
    slices: list[Slice] | None = Field(default=None, min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    dtype: Literal["float32", "float16", "bfloat16"] | None = None
    compute_dtype: Literal["float32", "float16", "bfloat16", "dtype"] = "float32"
    seed: int = 0
    device: str = "cpu"
    tokenizer_source: str = "base"
    chat_template: str | None = None
    overrides: list[Override] = Field(default_factory=list)
    max_shard_size: int | str = "2GiB"
    io_threads: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="before")
    @classmethod
    def _models_from_slices(cls, data: Any) -> Any:
        """With ``slices``, ``models`` is the list of distinct source models (in order of appearance)."""
        if not isinstance(data, dict) or not data.get("slices"):
            return data
        if data.get("models"):
            raise ValueError(
                "models: leave models out when slices are given (the slices' sources are the models)"
            )
        seen: dict[str, None] = {}
        for slice_ in data["slices"] if isinstance(data["slices"], list) else []:
            for source in (slice_.get("sources") or []) if isinstance(slice_, dict) else []:
                model = source.get("model") if isinstance(source, dict) else None
                if isinstance(model, str) and model != data.get("base_model"):
                    seen.setdefault(model)
        if not seen and isinstance(data.get("base_model"), str):
            seen[data["base_model"]] = None  # (the slice checks then say what is missing)
        return {**data, "models": [{"model": path} for path in seen]}

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
        upper = "" if method.max_models is None else f" and at most {method.max_models}"
        if self.slices is None:
            count = len(self.models)
            if count < method.min_models or (method.max_models is not None and count > method.max_models):
                raise ValueError(
                    f"models: method {self.method} takes at least {method.min_models}{upper} models"
                )
        names = [m.name for m in self.models if m.name is not None]
        if len(set(names)) != len(names):
            raise ValueError("models: two models have the same name")
        if self.slices is None:  # (with slices, each slice checks its own parameters and every override)
            self.method_params()
            for i in range(len(self.models)):
                self.model_params(i)
            known = {m.model for m in self.models} | set(names)
            for j, override in enumerate(self.overrides):
                for selector in override.models or []:
                    if selector not in known:
                        raise ValueError(f"overrides.{j}.models: {selector!r} names no model")
                self.split_override_on(j, override, self.models)
        for s, slice_ in enumerate(self.slices or []):
            self._check_slice(s, slice_, method, upper)
        return self

    def _check_slice(self, s: int, slice_: Slice, method: Any, upper: str) -> None:
        where = f"slices.{s}"
        for k, source in enumerate(slice_.sources):
            start, end = source.layer_range
            if end - start != slice_.length:
                first = list(slice_.sources[0].layer_range)
                raise ValueError(
                    f"{where}.sources.{k}.layer_range: [{start}, {end}] spans {end - start} layers, "
                    f"sources.0 spans {slice_.length} ({first}); a slice's ranges have one length"
                )
        for key in slice_.parameters:
            if key not in field_names(method.params) | field_names(method.model_params):
                raise ValueError(f"{where}.parameters.{key}: not a parameter of method {self.method}")
        inputs = self.slice_inputs(s)
        if self.base_model is not None and len(inputs) == len(slice_.sources):
            raise ValueError(
                f"{where}.sources: base_model {self.base_model!r} is not among the slice's sources "
                "(list it with the layer range it contributes)"
            )
        count = len(inputs)
        if count < method.min_models or (method.max_models is not None and count > method.max_models):
            raise ValueError(
                f"{where}.sources: method {self.method} takes at least {method.min_models}{upper} models "
                f"(besides base_model), got {count}"
            )
        self.method_params(slice_index=s, where=f"{where}.parameters")
        for k in inputs:
            self.source_params(s, k)
        known = {src.model for src in slice_.sources} | {src.name for src in slice_.sources if src.name}
        for j, override in enumerate([*self.overrides, *slice_.overrides]):
            label = (
                f"overrides.{j}"
                if j < len(self.overrides)
                else f"{where}.overrides.{j - len(self.overrides)}"
            )
            if j >= len(self.overrides):
                for selector in override.models or []:
                    if selector not in known:
                        raise ValueError(f"{label}.models: {selector!r} names no source of the slice")
            self.split_override_on(j, override, [slice_.sources[k] for k in inputs], label, s)

    def slice_inputs(self, s: int) -> list[int]:
        """Indices of slice ``s``'s sources that are merged (all but θ_base when there is a base_model)."""
        assert self.slices is not None
        sources = self.slices[s].sources
        if self.base_model is None:
            return list(range(len(sources)))
        return [k for k, src in enumerate(sources) if src.model != self.base_model]

    def slice_base(self, s: int) -> SliceSource | None:
        """Slice ``s``'s θ_base source (None without a base_model)."""
        assert self.slices is not None
        if self.base_model is None:
            return None
        return next((src for src in self.slices[s].sources if src.model == self.base_model), None)

    def method_params(
        self,
        extra: dict[str, Any] | None = None,
        where: str = "parameters",
        t: float | None = None,
        slice_index: int | None = None,
    ) -> Any:
        """The method's validated global parameters (then slice ``slice_index``'s, then ``extra``, e.g. from
        an override), gradients taken at layer position ``t`` (None: every gradient knot is checked and the
        values at t = 0 are returned)."""
        names = field_names(self._method().params)
        values = {k: v for k, v in self.parameters.items() if k in names}
        if slice_index is not None and self.slices is not None:
            values.update({k: v for k, v in self.slices[slice_index].parameters.items() if k in names})
        values.update(extra or {})
        return _validate_at(self._method().params, values, where, self.method, t)

    def model_params(self, index: int, extra: dict[str, Any] | None = None, t: float | None = None) -> Any:
        """Model ``index``'s validated per-model parameters: top-level defaults, its own, then ``extra``."""
        return self._entry_params(self.models[index], None, extra, f"models.{index}.parameters", t)

    def source_params(
        self, s: int, k: int, extra: dict[str, Any] | None = None, t: float | None = None
    ) -> Any:
        """Slice ``s``'s source ``k``: top-level defaults, the slice's, its own, then ``extra``."""
        assert self.slices is not None
        entry = self.slices[s].sources[k]
        return self._entry_params(entry, s, extra, f"slices.{s}.sources.{k}.parameters", t)

    def _entry_params(
        self, entry: ModelEntry, s: int | None, extra: dict[str, Any] | None, where: str, t: float | None
    ) -> Any:
        names = field_names(self._method().model_params)
        values = {k: v for k, v in self.parameters.items() if k in names}
        if s is not None and self.slices is not None:
            values.update({k: v for k, v in self.slices[s].parameters.items() if k in names})
        values.update(entry.parameters)
        values.update(extra or {})
        return _validate_at(self._method().model_params, values, where, self.method, t)

    def split_override(self, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Override ``index``'s parameters split into (method-level, per-model) keys."""
        return self.split_override_on(index, self.overrides[index], self.models)

    def split_override_on(
        self,
        index: int,
        override: Override,
        entries: list[Any],
        label: str | None = None,
        s: int | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``override``'s parameters split into (method-level, per-model) keys, validated for ``entries``
        (the models, or slice ``s``'s merged sources); errors name ``label``."""
        label = label or f"overrides.{index}"
        method = self._method()
        global_keys, model_keys = {}, {}
        for key, value in override.parameters.items():
            if key in field_names(method.params):
                global_keys[key] = value
            elif key in field_names(method.model_params):
                model_keys[key] = value
            else:
                raise ValueError(f"{label}.parameters.{key}: not a parameter of method {self.method}")
        self.method_params(global_keys, where=f"{label}.parameters", slice_index=s)
        for entry in entries:
            self._entry_params(entry, s, model_keys, f"{label}.parameters", None)
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

    def with_compute_dtype(self, compute_dtype: str) -> MergeConfig:
        """A copy computing in ``compute_dtype`` (validated; a one-line UsageError otherwise)."""
        if compute_dtype not in COMPUTE_DTYPES:
            raise UsageError(f"compute_dtype: {compute_dtype!r} is not one of {', '.join(COMPUTE_DTYPES)}")
        return self.model_copy(update={"compute_dtype": compute_dtype})

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
        for slice_ in self.slices or []:
            renamed.update({src.model: fix(src.model) for src in slice_.sources})
        if self.base_model is not None:
            renamed[self.base_model] = fix(self.base_model)
        models = [m.model_copy(update={"model": renamed[m.model]}) for m in self.models]

        def fix_overrides(overrides: list[Override]) -> list[Override]:
            return [
                o.model_copy(update={"models": [renamed.get(s, s) for s in o.models]}) if o.models else o
                for o in overrides
            ]

        slices = None
        if self.slices is not None:
            slices = [
                slice_.model_copy(
                    update={
                        "sources": [
                            src.model_copy(update={"model": renamed[src.model]}) for src in slice_.sources
                        ],
                        "overrides": fix_overrides(slice_.overrides),
                    }
                )
                for slice_ in self.slices
            ]
        return self.model_copy(
            update={
                "base_model": fix(self.base_model),
                "models": models,
                "slices": slices,
                "overrides": fix_overrides(self.overrides),
                "tokenizer_source": fix(self.tokenizer_source, ("base", "union")),
                "chat_template": fix(self.chat_template, ("base",)),
            }
        )


def _validate_at(
    schema: type[BaseModel], values: dict[str, Any], where: str, method: str, t: float | None
) -> Any:
    """``values`` validated with gradients at ``t``; with ``t`` None every knot is checked, t = 0 returned."""
    if t is not None:
        return _validate(schema, values_at(values, t), where, method)
    variants = knot_variants(values)
    first = _validate(schema, variants[0], where, method)
    for variant in variants[1:]:
        _validate(schema, variant, where, method)
    return first


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
