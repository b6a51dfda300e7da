"""Chat records in the open-instruct / Tulu JSONL form, and a reader that names every bad line.

One record per line::

    {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...], "id"?: str, "source"?: str}

Rules checked for each line: valid JSON object; ``messages`` a non-empty list; each message an object with a
``role`` among the three and a string ``content``; a system message only in first position; assistant
content not empty; at least one assistant turn. Other top-level keys are kept in ``extra``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from skillmerge.atomic import atomic_file
from skillmerge.errors import DataError

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """One conversation. ``messages`` is a tuple so records are hashable and safe to share."""

    messages: tuple[Message, ...]
    id: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def prompt(self) -> str:
        """The first user message: what leakage checks and evaluation prompts are compared on."""
        for message in self.messages:
            if message.role == "user":
                return message.content
        return ""

    @property
    def n_turns(self) -> int:
        """Number of assistant turns."""
        return sum(1 for m in self.messages if m.role == "assistant")

    @property
    def n_chars(self) -> int:
        return sum(len(m.content) for m in self.messages)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messages": [{"role": m.role, "content": m.content} for m in self.messages]}
        if self.id is not None:
            out["id"] = self.id
        if self.source is not None:
            out["source"] = self.source
        out.update(self.extra)
        return out

    def with_source(self, source: str) -> ChatRecord:
        return ChatRecord(self.messages, self.id, source, dict(self.extra))


def record_from_obj(obj: Any) -> ChatRecord:
    """Validate a decoded JSON value as a chat record; raises ``ValueError(reason)`` when it is not one."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "messages" not in obj:
        raise ValueError("missing 'messages'")
    raw = obj["messages"]
    if not isinstance(raw, list) or not raw:
        raise ValueError("'messages' must be a non-empty list")
    messages: list[Message] = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict):
            raise ValueError(f"messages[{i}] is not an object")
        role = msg.get("role")
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role is {role!r}; expected one of {', '.join(ROLES)}")
        content = msg.get("content")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string")
        if role == "system" and i != 0:
            raise ValueError(f"messages[{i}] is a system message; only the first message may be one")
        if role == "assistant" and not content.strip():
            raise ValueError(f"messages[{i}] is an assistant turn with empty content")
        messages.append(Message(role, content))
    if not any(m.role == "assistant" for m in messages):
        raise ValueError("no assistant turn")
    for key in ("id", "source"):
        if key in obj and obj[key] is not None and not isinstance(obj[key], str | int):
            raise ValueError(f"'{key}' must be a string")
    record_id = obj.get("id")
    source = obj.get("source")
    extra = {k: v for k, v in obj.items() if k not in ("messages", "id", "source")}
    return ChatRecord(
        tuple(messages),
        None if record_id is None else str(record_id),
        None if source is None else str(source),
        extra,
    )


@dataclass
class ReadReport:
    """What a read saw: how many records were kept, and every skipped line with its reason."""

    path: str
    n_records: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)


MAX_RECORD_BYTES = 4 * 1024**2
"""The longest line a JSONL reader accepts: 4 MiB, about a million tokens of text. A longer one is refused
(or skipped with ``skip_bad``) without being held in memory, so one hostile line cannot exhaust RAM (a
tokenizer needs ~0.25 GB per MB of text: 4 MiB bounds ``data check --tokenizer`` at about 1 GB)."""

_BOM = b"\xef\xbb\xbf"
_READ_CHUNK = 1024**2


def _lines(handle: Any, max_bytes: int) -> Iterator[bytes | None]:
    """The lines as bytes; None for a line longer than ``max_bytes`` (read past in chunks, never kept)."""
    while True:
        line = handle.readline(max_bytes + 1)
        if not line:
            return
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while True:  # skip the rest of the over-long line
                rest = handle.readline(_READ_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield None
        else:
            yield line


def iter_jsonl(
    path: str | Path,
    *,
    skip_bad: bool = False,
    report: ReadReport | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[ChatRecord]:
    """Yield records from a chat JSONL file (UTF-8, a leading byte-order mark allowed).

    On the first malformed line — bad JSON, not a chat record, not UTF-8, longer than ``max_record_bytes``
    — raise :class:`DataError` (``FILE:LINE: reason``), or with ``skip_bad`` record it in
    ``report.skipped`` and go on. Blank lines are ignored. Lines are decoded one by one, so an encoding
    error is reported at its own line.
    """
    path = Path(path)
    if report is None:
        report = ReadReport(str(path))
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise DataError(path, None, "no such file") from None
    except IsADirectoryError:
        raise DataError(path, None, "is a directory, expected a JSONL file") from None
    except OSError as err:
        raise DataError(path, None, f"cannot read ({err.strerror or err})") from None
    with handle:
        for lineno, raw in enumerate(_lines(handle, max_record_bytes), start=1):
            if raw is None:
                reason = f"record longer than {max_record_bytes / 1024**2:g} MiB (the reader's limit)"
            else:
                if lineno == 1 and raw.startswith(_BOM):  # spreadsheet exports start with one
                    raw = raw[len(_BOM) :]
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    reason = f"not UTF-8 text ({err.reason} at byte {err.start + 1} of the line)"
                else:
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as err:
                        reason = f"malformed JSON ({err.msg} at column {err.colno})"
                    else:
                        try:
                            record = record_from_obj(obj)
                        except ValueError as err:
                            reason = str(err)
                        else:
                            report.n_records += 1
                            yield record
                            continue
            if not skip_bad:
                raise DataError(path, lineno, reason)
            report.skipped.append((lineno, reason))


def read_jsonl(path: str | Path, *, skip_bad: bool = False) -> tuple[list[ChatRecord], ReadReport]:
    """Read a whole chat JSONL file; see :func:`iter_jsonl` for the error policy."""
    report = ReadReport(str(path))
    records = list(iter_jsonl(path, skip_bad=skip_bad, report=report))
    return records, report


def write_jsonl(path: str | Path, records: Iterable[ChatRecord], *, overwrite: bool = False) -> int:
    """Write records atomically (temp file + rename); returns how many were written."""
    n = 0
    with atomic_file(path, overwrite=overwrite) as handle:
        for record in records:
            handle.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n
