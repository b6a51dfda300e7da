"""Reading YAML configuration files with one-line errors (``FILE: problem`` or ``FILE:LINE: problem``).

Shared by every stage's config loader (mixtures, training, merging), so a bad file reads the same everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from skillmerge.errors import UsageError


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers as YAML 1.2 does: ``5e-1`` and ``1e5`` are floats.

    PyYAML implements YAML 1.1, where an exponent needs a dot (``5.0e-1``) and ``5e-1`` is a string, so a
    weight copied from a mergekit config or a learning rate written ``1e-5`` would fail as "not a number".
    Quoted values stay strings ('0.5' is still refused where a number is required).
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with the project's one reading of numbers (:class:`_Loader`); raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)


def read_yaml_mapping(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The top-level mapping of a YAML file (empty file → ``{}``), or a one-line :class:`UsageError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: {what} does not exist") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: {what} is not UTF-8 text") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read {what} ({err.strerror})") from None
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UsageError(f"{where}: malformed YAML ({getattr(err, 'problem', None) or err})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping ({what}), got {type(raw).__name__}")
    return raw


def first_validation_error(err: ValidationError) -> str:
    """``field.path: message`` of a pydantic error's first problem (pydantic's prefixes removed)."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    value = first.get("input")
    if isinstance(value, str | int | float) and not isinstance(value, bool) and len(repr(value)) <= 60:
        msg = f"{msg} (got {value!r})"  # name the culprit: which of several values was wrong
    return f"{loc}: {msg}" if loc else msg
