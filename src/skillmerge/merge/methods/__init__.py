"""The registry of merge methods, and validation of their parameters into one-line errors.

Importing this package registers the built-in methods: ``linear``, ``task_arithmetic``, ``wise_ft``,
``ties``, ``dare_linear``, ``dare_ties``, ``breadcrumbs``, ``breadcrumbs_ties``, ``della``,
``della_linear``, ``slerp``, ``nuslerp``, ``multislerp``, ``karcher``, ``model_stock``, ``sce``,
``nearswap`` and ``passthrough``. A new method is a module exporting ``METHODS`` (or any
:class:`MergeMethod`) passed to :func:`register`; the task-arithmetic family (task arithmetic, TIES, DARE,
breadcrumbs, DELLA) is one table in :mod:`.family`. A method only needs ``fn``; ``elementwise`` lets the
engine run it over slices, an ``into`` form (bitwise ``fn``, in place) spares that path its temporaries,
and a ``streamed`` form does the same for methods that need whole-tensor statistics first
(:class:`~skillmerge.merge.methods.base.MergeMethod`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from skillmerge.errors import UsageError
from skillmerge.merge.methods import (
    family,
    karcher,
    linear,
    model_stock,
    multislerp,
    nearswap,
    nuslerp,
    passthrough,
    sce,
    slerp,
    wise_ft,
)
from skillmerge.merge.methods.base import MergeMethod, TensorInputs
from skillmerge.merge.params import MethodParams, ModelParams, Number, validate_params

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


def parse_params(method: MergeMethod, raw: Mapping[str, Any], where: str = "parameters") -> MethodParams:
    """Validate the method's global parameters (defaults filled in); a one-line UsageError names the field."""
    return validate_params(method.params, raw, where, method.name)


def parse_model_params(method: MergeMethod, raw: Mapping[str, Any], where: str) -> ModelParams:
    """Validate one model's parameters besides ``weight``; ``where`` names the model (e.g. its path)."""
    return validate_params(method.model_params, raw, where, method.name)


_WEIGHT = TypeAdapter(Number)


def parse_weight(value: object, where: str) -> float:
    """A model's weight: a finite number (strings and booleans refused), else a one-line UsageError."""
    try:
        return _WEIGHT.validate_python(value)
    except ValidationError:
        raise UsageError(f"{where}: weight: must be a finite number (got {value!r})") from None


for _module in (
    linear,
    family,
    wise_ft,
    slerp,
    nuslerp,
    multislerp,
    karcher,
    model_stock,
    sce,
    nearswap,
    passthrough,
):
    for _method in _module.METHODS:
        register(_method)
