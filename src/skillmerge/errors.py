"""Errors a user can act on.

Every error raised for bad input carries a one-line message that names the culprit (file, line, tensor,
field). The CLI prints that line and exits with ``exit_code``: 2 for usage and validation problems.
"""

from __future__ import annotations

from pathlib import Path


class SkillmergeError(Exception):
    """Base class for problems the user can fix; ``str(err)`` is the whole one-line message."""

    exit_code = 1


class UsageError(SkillmergeError):
    """Bad arguments, configuration or input data (exit code 2)."""

    exit_code = 2


class DataError(UsageError):
    """A malformed record in a data file: ``FILE:LINE: reason``."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class TemplateError(UsageError):
    """An unknown chat template, or a tokenizer that cannot render the chosen one."""


class ModelError(UsageError):
    """A model file or directory that cannot be read or is inconsistent."""


class OutputExistsError(UsageError):
    """The output path exists and ``overwrite`` was not asked for."""
