"""The per-step metrics log of a run: ``metrics.jsonl`` beside the checkpoints, then in the output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Append-only JSONL of per-step metrics; on resume, lines after the checkpoint are dropped."""

    def __init__(self, path: Path, *, keep_lines: int, active: bool) -> None:
        self.path, self.lines, self.active = path, keep_lines, active
        if not active:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = path.read_text(encoding="utf-8").splitlines()[:keep_lines] if path.exists() else []
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.lines += 1
        if self.active:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
