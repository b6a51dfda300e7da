"""The registry of merge methods, and validation of their parameters into one-line errors.

Importing this package registers the built-in methods: ``linear``, ``task_arithmetic``, ``wise_ft``,
``ties``, ``dare_linear``, ``dare_ties``, ``breadcrumbs``, ``breadcrumbs_ties`` and ``slerp``. A new method
is a module exporting ``METHODS`` (or any :class:`MergeMethod`) passed to :func:`register`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from skillmerge.errors import UsageError
from skillmerge.merge.methods import breadcrumbs, dare, linear, slerp, task_arithmetic, ties, wise_ft
from skillmerge.merge.methods.base import MergeMethod, MethodParams, ModelParams, TensorInputs
from skillmerge.merge.methods.task_arithmetic import Number

__all__ = [
    "MergeMethod",
    "MethodParams",
    "ModelParams",
    "TensorInputs",
    "get_method",
    "list_methods",
    "parse_model_params",
    "parse_params",
    "parse_weight",
    "register",
]

_REGISTRY: dict[str, MergeMethod] = {}


def register(method: MergeMethod) -> MergeMethod:
    """Add ``method`` under ``method.name``; registering another method under a taken name is refused."""
    existing = _REGISTRY.get(method.name)
    if existing is not None and existing is not method:
        raise ValueError(f"merge method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def get_method(name: str) -> MergeMethod:
    """The method registered as ``name``, or a UsageError listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UsageError(f"unknown merge method {name!r}; choose one of: {known}") from None


def list_methods() -> list[MergeMethod]:
    """All registered methods, sorted by name."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def _one_line(error: ValidationError, where: str, schema: type[BaseModel], method: str) -> str:
    """Pydantic's multi-line report as one line: ``WHERE: FIELD: problem (got VALUE)``, joined by '; '."""
    allowed = ", ".join(field.alias or name for name, field in schema.model_fields.items()) or "none"
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "value"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown parameter {field!r} for method {method} (allowed: {allowed})")
        elif item["type"] == "missing":
            problems.append(f"{field}: required by method {method}")
        else:
            problems.append(f"{field}: {item['msg'][0].lower()}{item['msg'][1:]} (got {item['input']!r})")
    return f"{where}: " + "; ".join(problems)


def parse_params(method: MergeMethod, raw: Mapping[str, Any], where: str = "parameters") -> MethodParams:
    """Validate the method's global parameters (defaults filled in); a one-line UsageError names the field."""
    try:
        return method.params.model_validate(dict(raw))
    except ValidationError as error:
        raise UsageError(_one_line(error, where, method.params, method.name)) from None


def parse_model_params(method: MergeMethod, raw: Mapping[str, Any], where: str) -> ModelParams:
    """Validate one model's parameters besides ``weight``; ``where`` names the model (e.g. its path)."""
    try:
        return method.model_params.model_validate(dict(raw))
    except ValidationError as error:
        raise UsageError(_one_line(error, where, method.model_params, method.name)) from None


_WEIGHT = TypeAdapter(Number)


def parse_weight(value: object, where: str) -> float:
    """A model's weight: a finite number (strings and booleans refused), else a one-line UsageError."""
    try:
        return _WEIGHT.validate_python(value)
    except ValidationError:
        raise UsageError(f"{where}: weight: must be a finite number (got {value!r})") from None


for _module in (linear, task_arithmetic, wise_ft, ties, dare, breadcrumbs, slerp):
    for _method in _module.METHODS:
        register(_method)
