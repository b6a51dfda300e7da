"""The ``chat`` suite: held-out chat records scored against their last assistant turn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from skillmerge.data.records import ChatRecord, Message, write_jsonl
from skillmerge.errors import DataError
from skillmerge.evaluate import paper_scores
from skillmerge.evaluate.suites import get_suite
from skillmerge.evaluate.suites.base import Conversation, GenerationParams


class ScriptedBackend:
    """Replies with ``answer(conversation)``; records what it was asked."""

    name = "scripted"

    def __init__(self, answer: dict[str, str]) -> None:
        self.answer = answer
        self.seen: list[Conversation] = []

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[list[str]]:
        self.seen.extend(conversations)
        return [[self.answer.get(c[-1]["content"], "no idea")] for c in conversations]

    def loglikelihood(self, requests: Sequence[tuple[Conversation, str]]) -> list[float]:
        raise AssertionError("the chat suite only generates")


def _write(path: Path) -> Path:
    records = [
        ChatRecord((Message("user", "Capital of France?"), Message("assistant", "Paris.")), id="a"),
        ChatRecord(
            (
                Message("system", "Be brief."),
                Message("user", "Say hi"),
                Message("assistant", "hi"),
                Message("user", "Now say bye twice"),
                Message("assistant", "bye bye"),
            ),
            id="b",
        ),
    ]
    write_jsonl(path, records)
    return path


def test_replies_equal_to_the_reference_score_one(tmp_path: Path) -> None:
    suite = get_suite("chat", path=_write(tmp_path / "val.jsonl"))
    backend = ScriptedBackend({"Capital of France?": "paris", "Now say bye twice": "Bye bye."})
    result = suite.run(backend)
    assert result.metrics == {"exact_match": 1.0, "f1": 1.0, "score": 1.0}
    assert [i.verdict for i in result.items] == ["exact", "exact"]


def test_wrong_replies_score_zero(tmp_path: Path) -> None:
    result = get_suite("chat", path=_write(tmp_path / "val.jsonl")).run(ScriptedBackend({}))
    assert result.metrics == {"exact_match": 0.0, "f1": 0.0, "score": 0.0}


def test_multi_turn_record_is_scored_on_its_last_assistant_turn_only(tmp_path: Path) -> None:
    backend = ScriptedBackend({"Now say bye twice": "bye"})  # half the reference's tokens
    result = get_suite("chat", path=_write(tmp_path / "val.jsonl")).run(backend)
    item = result.items[1]
    assert item.meta["reference"] == "bye bye"
    assert backend.seen[1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "Now say bye twice"},
    ]
    # P = 1/1, R = 1/2 → F1 = 2/3; not an exact match.
    assert item.score == pytest.approx(2 / 3) and item.meta["em"] == 0.0


def test_limit_subsamples_with_the_seed(tmp_path: Path) -> None:
    suite = get_suite("chat", path=_write(tmp_path / "val.jsonl"))
    first = suite.run(ScriptedBackend({}), limit=1, seed=3)
    assert len(first.items) == 1 and first.meta["total_items"] == 2
    assert [i.id for i in suite.run(ScriptedBackend({}), limit=1, seed=3).items] == [first.items[0].id]


def test_record_without_an_assistant_turn_is_refused(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "bad.jsonl", [ChatRecord((Message("user", "hello"),), id="q1")])
    with pytest.raises(DataError, match=r"bad\.jsonl:1: no assistant turn"):
        get_suite("chat", path=tmp_path / "bad.jsonl").run(ScriptedBackend({}))


def test_chat_results_are_reported_unaggregated(tmp_path: Path) -> None:
    result = get_suite("chat", path=_write(tmp_path / "val.jsonl")).run(ScriptedBackend({}))
    scores = paper_scores([result])
    assert scores["unaggregated"] == ["chat"] and scores["general"] is None
