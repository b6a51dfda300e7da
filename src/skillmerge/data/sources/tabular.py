"""Chat records from table rows: CSV files, Parquet files and Hugging Face dataset rows.

A row becomes a :class:`ChatRecord` in one of two ways:

- a ``messages`` column holding the chat (a JSON string, or a list of ``{role, content}`` objects);
- a ``prompt`` column plus a ``response`` (or ``completion``) column, mapped to one user/assistant pair, with
  an optional ``system`` column.

Optional ``id`` and ``source`` columns fill those fields; other non-empty columns go to ``extra``. A bad row
raises :class:`DataError` naming the file, the row (counted from 1, header excluded) and the column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from skillmerge.data.records import ChatRecord, Message, ReadReport, record_from_obj
from skillmerge.errors import DataError

RESPONSE_COLUMNS = ("response", "completion")
_OWN_COLUMNS = ("messages", "prompt", "system", "id", "source", *RESPONSE_COLUMNS)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check_columns(columns: Sequence[str], where: str | Path) -> None:
    """Refuse a table that has neither ``messages`` nor ``prompt`` + ``response``/``completion``."""
    if "messages" in columns:
        return
    if "prompt" in columns and any(c in columns for c in RESPONSE_COLUMNS):
        return
    raise DataError(
        where,
        None,
        f"no 'messages' column and no 'prompt' + 'response'/'completion' columns (has: {', '.join(columns)})",
    )


def _text_field(row: Mapping[str, Any], column: str) -> str | None:
    value = row.get(column)
    if _blank(value):
        return None
    if not isinstance(value, str | int):
        raise ValueError(f"column '{column}' must be text, got {type(value).__name__}")
    return str(value)


def _messages_from_row(row: Mapping[str, Any]) -> tuple[Message, ...]:
    if "messages" in row:
        raw = row["messages"]
        if _blank(raw):
            raise ValueError("column 'messages' is empty")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"column 'messages': malformed JSON ({err.msg} at column {err.colno})"
                ) from None
        try:
            return record_from_obj({"messages": raw}).messages
        except ValueError as err:
            raise ValueError(f"column 'messages': {err}") from None
    response_column = next(c for c in RESPONSE_COLUMNS if c in row)
    for column in ("prompt", response_column):
        if _blank(row.get(column)) or not isinstance(row.get(column), str):
            raise ValueError(f"column '{column}' is empty or not text")
    messages = [Message("user", row["prompt"]), Message("assistant", row[response_column])]
    system = row.get("system")
    if not _blank(system):
        if not isinstance(system, str):
            raise ValueError("column 'system' must be text")
        messages.insert(0, Message("system", system))
    return tuple(messages)


def row_to_record(row: Mapping[str, Any]) -> ChatRecord:
    """Convert one table row; raises ``ValueError("column 'X': reason")`` when it is not a chat."""
    messages = _messages_from_row(row)
    extra = {k: v for k, v in row.items() if k not in _OWN_COLUMNS and not _blank(v)}
    return ChatRecord(messages, _text_field(row, "id"), _text_field(row, "source"), extra)


def rows_to_records(
    rows: Iterable[tuple[int | None, Mapping[str, Any]]],
    where: str | Path,
    *,
    skip_bad: bool = False,
    report: ReadReport | None = None,
) -> Iterator[ChatRecord]:
    """Convert ``(line, row)`` pairs (line may be ``None``); rows are numbered from 1 in error messages."""
    for number, (line, row) in enumerate(rows, start=1):
        try:
            record = row_to_record(row)
        except ValueError as err:
            if not skip_bad:
                raise DataError(where, line, f"row {number}, {err}") from None
            if report is not None:
                report.skipped.append((line if line is not None else number, f"row {number}, {err}"))
            continue
        if report is not None:
            report.n_records += 1
        yield record


def _csv_rows(path: Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as err:
        raise DataError(path, None, f"cannot open ({err.strerror})") from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            check_columns(reader.fieldnames or [], path)
            for row in reader:
                if None in row:  # DictReader files surplus cells under the key None
                    raise DataError(path, reader.line_num, "row has more cells than the header has columns")
                yield reader.line_num, row
        except UnicodeDecodeError as err:
            raise DataError(path, reader.line_num + 1, f"not UTF-8 text ({err.reason})") from None
        except csv.Error as err:
            raise DataError(path, reader.line_num, f"malformed CSV ({err})") from None


def read_csv_records(
    path: str | Path, *, skip_bad: bool = False, report: ReadReport | None = None
) -> list[ChatRecord]:
    """Read a CSV chat table (UTF-8, header row); errors name ``FILE:LINE: row N, column 'X': reason``."""
    path = Path(path)
    return list(rows_to_records(_csv_rows(path), path, skip_bad=skip_bad, report=report))


def read_parquet_records(
    path: str | Path, *, skip_bad: bool = False, report: ReadReport | None = None
) -> list[ChatRecord]:
    """Read a Parquet chat table; errors name ``FILE: row N, column 'X': reason``."""
    import pyarrow.parquet as pq  # pyarrow is heavy; only Parquet users pay for it

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(path, None, f"not a readable Parquet file ({first_line})") from None
    check_columns(table.column_names, path)
    rows = ((None, row) for row in table.to_pylist())
    return list(rows_to_records(rows, path, skip_bad=skip_bad, report=report))
