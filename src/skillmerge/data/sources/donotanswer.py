"""Do-Not-Answer (Wang et al., 2023): questions a responsible model should decline, one JSONL per risk area.

Each line is ``{"prompt": str, "intents": [str, ...]}``; the file name (without ``.jsonl``) is the risk
area, kept as :attr:`PromptItem.category`.
"""

from __future__ import annotations

import json
from pathlib import Path

from skillmerge.data.prompts import PromptItem
from skillmerge.data.sources.datadir import locate_files
from skillmerge.errors import DataError


def load_donotanswer(path: str | Path | None = None) -> list[PromptItem]:
    """All questions of one ``.jsonl`` file or of every ``.jsonl`` in a folder (name order), as unsafe."""
    items: list[PromptItem] = []
    for file in locate_files(path, subdir="donotanswer", suffix=".jsonl"):
        area = file.stem
        with file.open(encoding="utf-8") as handle:
            for n, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(file, n, f"malformed JSON ({err.msg} at column {err.colno})") from None
                prompt = obj.get("prompt") if isinstance(obj, dict) else None
                if not isinstance(prompt, str) or not prompt.strip():
                    raise DataError(file, n, "'prompt' missing or empty")
                meta = {"intents": list(obj.get("intents") or []), "line": n}
                items.append(
                    PromptItem(f"donotanswer-{area}-{n}", prompt, "donotanswer", "unsafe", area, meta)
                )
    return items
