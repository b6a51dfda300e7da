"""Chat records from local files: ``.jsonl`` (see :mod:`skillmerge.data.records`), ``.csv``, ``.parquet``.

A folder stands for every supported file directly inside it, read in name order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skillmerge.data.records import ChatRecord, ReadReport, read_jsonl
from skillmerge.data.sources.tabular import read_csv_records, read_parquet_records
from skillmerge.errors import UsageError


def _read_jsonl(path: Path, *, skip_bad: bool, report: ReadReport | None) -> list[ChatRecord]:
    records, seen = read_jsonl(path, skip_bad=skip_bad)
    if report is not None:
        report.n_records += seen.n_records
        report.skipped.extend(seen.skipped)
    return records


READERS: dict[str, Callable[..., list[ChatRecord]]] = {
    ".jsonl": _read_jsonl,
    ".csv": read_csv_records,
    ".parquet": read_parquet_records,
}


def read_local_records(
    path: str | Path, *, skip_bad: bool = False, report: ReadReport | None = None
) -> list[ChatRecord]:
    """Read chat records from a file, or from every ``.jsonl``/``.csv``/``.parquet`` file in a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in READERS)
        if not files:
            raise UsageError(f"{path}: folder holds no {', '.join(READERS)} files")
    elif path.is_file():
        if path.suffix not in READERS:
            raise UsageError(f"{path}: unsupported file type {path.suffix!r}; expected {', '.join(READERS)}")
        files = [path]
    else:
        raise UsageError(f"{path}: no such file or folder")
    records: list[ChatRecord] = []
    for file in files:
        records.extend(READERS[file.suffix](file, skip_bad=skip_bad, report=report))
    return records
