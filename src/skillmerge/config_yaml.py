"""Reading YAML configuration files with one-line errors (``FILE: problem`` or ``FILE:LINE: problem``).

Shared by every stage's config loader (mixtures, training, merging), so a bad file reads the same everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from skillmerge.errors import UsageError


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
        raw = yaml.safe_load(text)
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
