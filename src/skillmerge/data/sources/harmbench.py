"""HarmBench "standard" behaviours (Mazeika et al., 2024): one harmful request per line of a text file."""

from __future__ import annotations

from pathlib import Path

from skillmerge.data.prompts import PromptItem
from skillmerge.data.sources.datadir import locate_file
from skillmerge.errors import DataError

FILE_NAME = "harmbench_prompts.txt"


def load_harmbench(path: str | Path | None = None) -> list[PromptItem]:
    """Every non-blank line is one behaviour, labelled ``unsafe``; ids are ``harmbench-LINE``."""
    file = locate_file(path, subdir="harmbench", names=(FILE_NAME,))
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(file, None, f"not UTF-8 text ({err.reason})") from None
    return [
        PromptItem(f"harmbench-{n}", text.strip(), "harmbench", "unsafe", None, {"line": n})
        for n, text in enumerate(lines, start=1)
        if text.strip()
    ]
