"""The chat JSONL reader: every bad line is refused with FILE:LINE: reason; good records round-trip."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skillmerge.data.records import ChatRecord, Message, read_jsonl, write_jsonl
from skillmerge.errors import DataError, UsageError

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _bad_file(tmp_path: Path, bad_line: str) -> Path:
    """A file whose second line is ``bad_line`` between two good ones."""
    good = json.dumps(GOOD)
    return _write_lines(tmp_path / "data.jsonl", [good, bad_line, good])


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"messages": [', "malformed JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"prompt": "hi"}', "missing 'messages'"),
        ('{"messages": []}', "'messages' must be a non-empty list"),
        (
            '{"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]}',
            "messages[0].role is 'bot'; expected one of system, user, assistant",
        ),
        (
            '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]}',
            "messages[1] is an assistant turn with empty content",
        ),
        ('{"messages": [{"role": "user", "content": "only a question"}]}', "no assistant turn"),
        (
            '{"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "s"},'
            ' {"role": "assistant", "content": "y"}]}',
            "messages[1] is a system message; only the first message may be one",
        ),
        ('{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]}', "content"),
    ],
)
def test_bad_line_is_refused_with_file_and_line(tmp_path: Path, bad_line: str, reason: str) -> None:
    path = _bad_file(tmp_path, bad_line)
    with pytest.raises(DataError) as info:
        read_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: ")
    assert reason in message
    assert "\n" not in message
    assert info.value.line == 2
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2


def test_skip_bad_counts_every_bad_line_and_keeps_going(tmp_path: Path) -> None:
    good = json.dumps(GOOD)
    path = _write_lines(
        tmp_path / "mixed.jsonl",
        [good, "not json", good, "", '{"messages": [{"role": "user", "content": "q"}]}', good],
    )
    records, report = read_jsonl(path, skip_bad=True)
    assert len(records) == 3
    assert report.n_records == 3
    assert [line for line, _ in report.skipped] == [2, 5]  # the blank line 4 is neither kept nor bad
    assert report.skipped[1][1] == "no assistant turn"


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such file"):
        read_jsonl(tmp_path / "absent.jsonl")


def test_extra_keys_and_ids_are_kept(tmp_path: Path) -> None:
    obj = {**GOOD, "id": 7, "source": "tulu", "dataset": "x", "score": 0.5}
    path = _write_lines(tmp_path / "one.jsonl", [json.dumps(obj)])
    [record], _ = read_jsonl(path)
    assert record.id == "7"
    assert record.source == "tulu"
    assert record.extra == {"dataset": "x", "score": 0.5}
    assert record.messages == (Message("user", "hi"), Message("assistant", "hello"))


_text = st.text(max_size=40)
_answer = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")
_turns = st.lists(st.tuples(_text, _answer), min_size=1, max_size=3)
_json_value = st.one_of(st.integers(-1000, 1000), st.booleans(), st.none(), _text)


@st.composite
def chat_records(draw: st.DrawFn) -> ChatRecord:
    messages: list[Message] = []
    if draw(st.booleans()):
        messages.append(Message("system", draw(_text)))
    for question, answer in draw(_turns):
        messages.append(Message("user", question))
        messages.append(Message("assistant", answer))
    extra = draw(
        st.dictionaries(
            st.text(min_size=1, max_size=8).filter(lambda k: k not in ("messages", "id", "source")),
            _json_value,
            max_size=2,
        )
    )
    return ChatRecord(tuple(messages), draw(st.none() | _text), draw(st.none() | _text), extra)


@settings(max_examples=60, deadline=None)
@given(st.lists(chat_records(), min_size=0, max_size=5))
def test_write_then_read_round_trips(records: list[ChatRecord]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "round.jsonl"
        assert write_jsonl(path, records) == len(records)
        back, report = read_jsonl(path)
    assert back == records
    assert [r.extra for r in back] == [r.extra for r in records]
    assert report.n_skipped == 0
