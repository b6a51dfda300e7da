"""Chat records from a Hugging Face dataset: ``hub:ORG/NAME[:split]`` (split defaults to ``train``).

Needs the optional ``datasets`` library and network access. Offline (``HF_HUB_OFFLINE`` or
``HF_DATASETS_OFFLINE`` set to a true value) or without ``datasets`` it refuses with one line that points at
local files instead, before importing anything heavy.
"""

from __future__ import annotations

import os

from skillmerge.data.records import ChatRecord, ReadReport
from skillmerge.data.sources.tabular import check_columns, rows_to_records
from skillmerge.errors import UsageError

HUB_PREFIX = "hub:"
_TRUE = {"1", "true", "yes", "on"}
_LOCAL_HINT = "pass a local .jsonl/.csv/.parquet path instead"


def parse_hub_spec(spec: str) -> tuple[str, str]:
    """``hub:ORG/NAME[:split]`` (prefix optional) -> ``(ORG/NAME, split)``."""
    body = spec.removeprefix(HUB_PREFIX)
    name, _, split = body.partition(":")
    if not name or name.startswith("/") or name.endswith("/") or name.count("/") > 1:
        raise UsageError(f"{spec}: expected hub:ORG/NAME[:split]")
    return name, split or "train"


def hub_offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def load_hub_records(
    spec: str, *, skip_bad: bool = False, report: ReadReport | None = None
) -> list[ChatRecord]:
    """Download (or read from the HF cache) one split and convert its rows like a local table."""
    name, split = parse_hub_spec(spec)
    if hub_offline():
        raise UsageError(f"{spec}: the Hugging Face Hub is switched off (HF_HUB_OFFLINE=1); {_LOCAL_HINT}")
    try:
        import datasets
    except ImportError:
        raise UsageError(
            f"{spec}: the `datasets` library is not installed (pip install 'skillmerge[hub]'); {_LOCAL_HINT}"
        ) from None
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as err:  # network, auth, missing split: all end the same way for the user
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(f"{spec}: cannot load from the Hugging Face Hub ({reason}); {_LOCAL_HINT}") from None
    check_columns(list(dataset.column_names), spec)
    rows = ((None, row) for row in dataset)
    return list(rows_to_records(rows, spec, skip_bad=skip_bad, report=report))
