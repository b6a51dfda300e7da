"""Merge-method parameters: their schemas' base classes, the number type, and the one validation path.

Every parameter a merge reads — a method's global parameters, a model's own (``density``), an override's —
is validated here, by the method's pydantic schema, into one line ``WHERE: FIELD: problem (got VALUE)``.
The config (:mod:`skillmerge.merge.config`) and direct callers (:func:`skillmerge.merge.methods.parse_params`)
both go through :func:`validate_params`. No torch here: configs validate without loading it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from skillmerge.errors import UsageError

FLOAT32_MAX = 3.4028234663852886e38  # merges compute in fp32: a larger number becomes inf there


def _fits_float32(value: float) -> float:
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"must be at most {FLOAT32_MAX:.4g} in magnitude (merges compute in float32)")
    return value


Number = Annotated[float, Field(strict=True, allow_inf_nan=False), AfterValidator(_fits_float32)]
"""A finite real number that float32 can hold (ints allowed; strings and booleans refused, so a quoted
'0.5' is an error)."""

S = TypeVar("S", bound=BaseModel)


class MethodParams(BaseModel):
    """Global parameters of a method (subclass per method). Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelParams(BaseModel):
    """Per-model parameters of a method besides ``weight`` (subclass per method). Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def field_names(schema: type[BaseModel]) -> set[str]:
    """The keys a parameter schema accepts: field names and their aliases (``lambda`` for ``lambda_``)."""
    names = set(schema.model_fields)
    names |= {f.alias for f in schema.model_fields.values() if f.alias}
    return names


def validate_params(schema: type[S], raw: Mapping[str, Any], where: str, method: str) -> S:
    """``raw`` validated by ``schema`` (defaults filled in), else a one-line UsageError naming each field."""
    try:
        return schema.model_validate(dict(raw))
    except ValidationError as error:
        raise UsageError(f"{where}: {_problems(error, schema, method)}") from None


def _problems(error: ValidationError, schema: type[BaseModel], method: str) -> str:
    """Pydantic's multi-line report as one line: ``FIELD: problem (got VALUE)``, joined by '; '."""
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
    return "; ".join(problems)
