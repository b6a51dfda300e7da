"""XSTest v2 prompts (Röttger et al., 2024): 250 safe prompts that sound unsafe, 200 unsafe contrasts.

CSV columns ``id, prompt, type, label, focus, note``; ``label`` is ``safe`` or ``unsafe`` and becomes
:attr:`PromptItem.label`, ``type`` becomes :attr:`PromptItem.category`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from skillmerge.data.prompts import PromptItem
from skillmerge.data.sources.datadir import locate_file
from skillmerge.errors import DataError

FILE_NAME = "xstest_prompts.csv"
LABELS = ("safe", "unsafe")
_REQUIRED = ("id", "prompt", "type", "label")


def load_xstest(path: str | Path | None = None, *, label: str | None = None) -> list[PromptItem]:
    """All XSTest prompts, or only those with ``label`` (``safe``/``unsafe``)."""
    file = locate_file(path, subdir="xstest", names=(FILE_NAME,))
    items: list[PromptItem] = []
    with file.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(file, 1, f"missing column(s) {', '.join(missing)}")
        for row in reader:
            line = reader.line_num
            if row["label"] not in LABELS:
                raise DataError(file, line, f"column 'label' is {row['label']!r}; expected safe or unsafe")
            if not (row["prompt"] or "").strip():
                raise DataError(file, line, "column 'prompt' is empty")
            if label is not None and row["label"] != label:
                continue
            meta = {k: v for k, v in row.items() if k not in _REQUIRED and k is not None}
            items.append(
                PromptItem(f"xstest-{row['id']}", row["prompt"], "xstest", row["label"], row["type"], meta)
            )
    return items
