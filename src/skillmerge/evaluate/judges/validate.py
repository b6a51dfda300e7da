"""Measure a refusal judge against human labels (XSTest's ``completions_*_gpt4labels.csv``).

Each row holds ``prompt``, ``completion`` and a human ``final_label``: ``1_full_compliance``,
``2_full_refusal`` or ``3_partial_refusal``. Gold is binary, full compliance vs any refusal. With refusal as
the positive class::

    accuracy  = (TP + TN) / N
    precision = TP / (TP + FP)      recall = TP / (TP + FN)      F1 = 2·P·R / (P + R)

The pattern judge's rules were developed on :data:`DEVELOPMENT_FILE` (Llama-2 completions) and checked on
:data:`CHECK_FILE` (Mistral-Instruct completions); docs/refusal-judge.md gives both sets of numbers and how
the check file was used.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skillmerge.data.sources import default_data_dir
from skillmerge.errors import DataError, UsageError
from skillmerge.evaluate.judges import Judge, RefusalJudge, judge_all

DEVELOPMENT_FILE = "completions_llama2orig_gpt4labels.csv"
CHECK_FILE = "completions_mistralinstruct_gpt4labels.csv"
LABEL_COLUMN = "final_label"
_REFUSAL_LABELS = {"2_full_refusal", "3_partial_refusal"}
_COMPLIANCE_LABELS = {"1_full_compliance"}


@dataclass(frozen=True)
class JudgeMetrics:
    """Binary agreement of a judge with human labels on one file (refusal is the positive class)."""

    file: str
    n: int
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        out.update(accuracy=self.accuracy, precision=self.precision, recall=self.recall, f1=self.f1)
        return out


def read_labelled(path: str | Path) -> list[tuple[str, str, bool]]:
    """``(prompt, completion, gold_is_refusal)`` per row; a missing column or unknown label is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    rows: list[tuple[str, str, bool]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for column in ("prompt", "completion", LABEL_COLUMN):
            if column not in (reader.fieldnames or []):
                raise DataError(path, 1, f"no column {column!r}")
        for row in reader:
            label = (row[LABEL_COLUMN] or "").strip()
            if label not in _REFUSAL_LABELS | _COMPLIANCE_LABELS:
                raise DataError(path, reader.line_num, f"unknown {LABEL_COLUMN} {label!r}")
            rows.append((row["prompt"] or "", row["completion"] or "", label in _REFUSAL_LABELS))
    if not rows:
        raise DataError(path, None, "no labelled rows")
    return rows


def validate_judge(judge: Judge, path: str | Path) -> JudgeMetrics:
    """Confusion counts of ``judge`` against the human labels in ``path``."""
    rows = read_labelled(path)
    verdicts = judge_all(judge, [(prompt, completion) for prompt, completion, _ in rows])
    tp = fp = fn = tn = 0
    for (_, _, gold), verdict in zip(rows, verdicts, strict=True):
        predicted = verdict.verdict == "refuse"
        tp += predicted and gold
        fp += predicted and not gold
        fn += gold and not predicted
        tn += not gold and not predicted
    return JudgeMetrics(Path(path).name, len(rows), tp, fp, fn, tn)


def labelled_files(data_dir: str | Path | None = None) -> list[Path]:
    """The human-labelled XSTest completion files under ``data_dir/xstest`` (default: the offline data)."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = root / "xstest" if (root / "xstest").is_dir() else root
    files = sorted(folder.glob("completions_*_gpt4labels.csv"))
    if not files:
        raise UsageError(f"{folder}: no completions_*_gpt4labels.csv files")
    return files


def validate_files(
    judge: Judge | None = None, paths: Iterable[str | Path] | None = None
) -> list[JudgeMetrics]:
    """Metrics per file for ``judge`` (default: patterns) on ``paths`` (default: all labelled files)."""
    judge = judge or RefusalJudge()
    files: Sequence[str | Path] = list(paths) if paths is not None else labelled_files()
    return [validate_judge(judge, path) for path in files]


def metrics_table(metrics: Sequence[JudgeMetrics]) -> str:
    """A fixed-width text table: one row per file."""
    lines = [f"{'file':<46} {'n':>4} {'acc':>6} {'prec':>6} {'rec':>6} {'f1':>6}"]
    for m in metrics:
        lines.append(
            f"{m.file:<46} {m.n:>4} {m.accuracy:>6.3f} {m.precision:>6.3f} {m.recall:>6.3f} {m.f1:>6.3f}"
        )
    return "\n".join(lines)
