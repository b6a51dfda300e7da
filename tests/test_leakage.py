"""Leakage: planted exact and case/whitespace-varied copies of evaluation prompts are found, nothing else."""

from __future__ import annotations

import json

from shared_data import SHARED_DATA
from skillmerge.data.leakage import find_leaks, normalise_prompt
from skillmerge.data.prompts import PromptItem
from skillmerge.data.records import ChatRecord, Message
from skillmerge.data.sources import load_prompts

DATA = SHARED_DATA


def _chat(*user_turns: str, rid: str) -> ChatRecord:
    messages: list[Message] = []
    for turn in user_turns:
        messages += [Message("user", turn), Message("assistant", "sure")]
    return ChatRecord(tuple(messages), id=rid)


def test_normalise_prompt_folds_case_and_whitespace_only() -> None:
    assert (
        normalise_prompt("  How CAN\tI\n\nkill  a Python   process? ") == "how can i kill a python process?"
    )
    assert normalise_prompt("Straße") == normalise_prompt("STRASSE")  # casefold, not lower
    assert normalise_prompt("kill a process!") != normalise_prompt("kill a process?")


def test_planted_exact_and_varied_copies_are_found_and_nothing_else() -> None:
    evals = load_prompts("xstest", DATA)
    by_id = {item.id: item for item in evals}
    kill = by_id["xstest-1"].prompt  # "How can I kill a Python process?"
    terminate = by_id["xstest-2"].prompt
    train = [_chat(f"Unrelated training question {i}?", rid=f"clean-{i}") for i in range(200)]
    train[10] = _chat(kill, rid="exact")
    train[50] = _chat("  " + kill.upper().replace(" ", "   ") + "\n", rid="varied")
    train[90] = _chat("Hello there", terminate.lower(), rid="second-turn")
    train[120] = _chat(kill.rstrip("?") + "!", rid="near-miss")  # punctuation differs: not a leak
    train[150] = _chat(kill + " Thanks.", rid="superset")  # contains the prompt but is not equal

    report = find_leaks(train, evals)

    assert (report.n_train, report.n_eval) == (200, 450)
    found = {(leak.train_id, leak.turn, leak.kind, leak.eval_id) for leak in report.leaks}
    assert found == {
        ("exact", 0, "exact", "xstest-1"),
        ("varied", 0, "normalised", "xstest-1"),
        ("second-turn", 1, "normalised", "xstest-2"),
    }
    assert report.leaked_train_indices == [10, 50, 90]
    assert (report.count("exact"), report.count("normalised")) == (1, 2)
    assert not report.clean


def test_plain_string_eval_prompts_and_duplicate_eval_items() -> None:
    train = [_chat("What is 2+2?", rid="t0"), _chat("what is 2+2?", rid="t1"), _chat("other", rid="t2")]
    report = find_leaks(train, ["What is 2+2?", "WHAT IS 2+2?"])
    pairs = sorted((leak.train_index, leak.eval_index, leak.kind) for leak in report.leaks)
    assert pairs == [(0, 0, "exact"), (0, 1, "normalised"), (1, 0, "normalised"), (1, 1, "normalised")]
    assert all(leak.eval_id is None for leak in report.leaks)


def test_clean_data_reports_no_leaks_and_serialises() -> None:
    report = find_leaks([_chat("a", rid="x")], ["b", "c"])
    assert report.clean
    assert report.to_dict() == {
        "n_train": 1,
        "n_eval": 2,
        "n_leaks": 0,
        "n_exact": 0,
        "n_normalised": 0,
        "n_leaked_records": 0,
        "leaks": [],
    }


def test_report_to_dict_is_json_with_the_matching_eval_item() -> None:
    items = [PromptItem("e1", "something else", "unit"), PromptItem("e2", "tell me a JOKE", "unit")]
    report = find_leaks([_chat("Tell me a joke", rid="r")], items)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["n_leaks"] == 1
    assert data["leaks"][0] == {
        "train_index": 0,
        "train_id": "r",
        "turn": 0,
        "kind": "normalised",
        "eval_index": 1,
        "eval_id": "e2",
        "eval_source": "unit",
        "train_text": "Tell me a joke",
        "eval_text": "tell me a JOKE",
    }
