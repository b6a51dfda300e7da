"""General suites: answer extraction, multiple-choice scoring, GSM items, instruction checkers, registry."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from skillmerge.errors import DataError, UsageError
from skillmerge.evaluate.suites import get_suite, headline_score, select_items
from skillmerge.evaluate.suites.base import Conversation, GenerationParams
from skillmerge.evaluate.suites.general import (
    _FACTS,
    MCItem,
    answers_match,
    extract_answer,
    generate_instruction_items,
    generate_math_items,
    generate_mc_items,
    load_mc_jsonl,
    run_instructions,
    run_math,
    run_mc,
)


class ScriptedBackend:
    """A ModelBackend whose replies and log-likelihoods come from functions of the prompt text."""

    name = "scripted"

    def __init__(
        self,
        reply: Callable[[str], str] = lambda prompt: "",
        score: Callable[[str, str], float] = lambda prompt, continuation: 0.0,
    ) -> None:
        self.reply, self.score = reply, score
        self.calls: list[str] = []

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[list[str]]:
        self.calls.append("generate")
        return [[self.reply(c[-1]["content"])] * params.n for c in conversations]

    def loglikelihood(self, requests: Sequence[tuple[Conversation, str]]) -> list[float]:
        self.calls.append("loglikelihood")
        return [self.score(c[-1]["content"], continuation) for c, continuation in requests]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("First 3 + 4 = 7 apples.\n#### 1,234", "1,234"),
        ("So we get \\boxed{42} in the end, not 41.", "42"),
        ("She pays 3 * 6 = 18 dollars. The answer is $18.", "$18"),
        ("The answer is 7. Wait, I misread: the answer is 8.", "8"),
        ("Final answer: -5", "-5"),
        ("3 apples and 4 pears make 7 fruits", "7"),
        ("Each costs 2.50, so the total is 12.50.", "12.50"),
        ("I do not know.", None),
    ],
)
def test_answer_extraction_from_chain_of_thought(completion: str, expected: str | None) -> None:
    assert extract_answer(completion) == expected


def test_numeric_answers_match_across_formats() -> None:
    assert answers_match("1,000.00", "1000")
    assert answers_match("$18", "18")
    assert answers_match("12.50", "12.5")
    assert not answers_match("17", "18")
    assert not answers_match(None, "3")
    assert not answers_match("seven", "7")


def test_generated_mc_items_are_fixed_and_correct() -> None:
    items = generate_mc_items(100)
    assert items == generate_mc_items(100)
    assert len({item.question for item in items}) == 100
    for item in items:
        template, table = _FACTS[item.topic]
        subject = next(s for s in table if template.format(s) == item.question)
        assert item.choices[item.answer] == table[subject]
        assert len(set(item.choices)) == 4
    with pytest.raises(UsageError, match="at most"):
        generate_mc_items(10_000)


def test_mc_jsonl_accepts_index_letter_or_text_answers(tmp_path: Path) -> None:
    path = tmp_path / "mc.jsonl"
    rows = [
        {"id": "q1", "question": "2+2?", "choices": ["3", "4"], "answer": 1},
        {"question": "Sky colour?", "choices": ["red", "blue", "green"], "answer": "B"},
        {"question": "Largest?", "choices": ["ant", "whale"], "answer": "whale"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    items = load_mc_jsonl(path)
    assert [(i.id, i.answer) for i in items] == [("q1", 1), ("line-2", 1), ("line-3", 1)]


def test_bad_mc_line_is_refused_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "mc.jsonl"
    good = json.dumps({"question": "q", "choices": ["a", "b"], "answer": 0})
    path.write_text(good + "\n" + json.dumps({"question": "q", "choices": ["a", "b"], "answer": "C"}) + "\n")
    with pytest.raises(DataError) as info:
        load_mc_jsonl(path)
    assert str(info.value) == f"{path}:2: 'answer' 'C' is not an index, letter or choice"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="empty prompt set"):
        load_mc_jsonl(empty)


def test_mc_accuracy_and_length_normalised_accuracy() -> None:
    items = [
        MCItem("a", "Q1", ("cat", "elephant"), 1),
        MCItem("b", "Q2", ("dog", "hippopotamus"), 0),
    ]
    # log p = −(number of characters): the raw sum prefers short choices; per character all tie (first wins).
    backend = ScriptedBackend(score=lambda prompt, continuation: -float(len(continuation)))
    metrics, results = run_mc(backend, items)
    assert metrics == {"acc": 0.5, "acc_norm": 0.5}
    assert [r.completion for r in results] == ["cat", "dog"]
    assert [r.verdict for r in results] == ["wrong", "correct"]
    # Per character: cat −1, elephant −0.5 (right); dog −1/3 (right), hippopotamus −0.5.
    table = {"cat": -3.0, "elephant": -4.0, "dog": -1.0, "hippopotamus": -6.0}
    metrics, results = run_mc(ScriptedBackend(score=lambda p, c: table[c]), items)
    assert metrics == {"acc": 0.5, "acc_norm": 1.0}
    assert results[0].meta["logprobs"] == [-3.0, -4.0]


def test_math_items_come_from_reasoning_gym_with_a_fixed_seed() -> None:
    items = generate_math_items(6)
    assert items == generate_math_items(6)
    assert all(item.question and float(item.answer) == float(item.answer) for item in items)
    answers = {item.question: item.answer for item in items}
    # The first half answered right in GSM style, the rest with a wrong final number.
    right = set(list(answers)[:3])
    backend = ScriptedBackend(
        reply=lambda prompt: next(
            f"Let me think. 2 + 2 = 4.\nThe answer is {a if q in right else int(float(a)) + 1}."
            for q, a in answers.items()
            if prompt.startswith(q)
        )
    )
    metrics, results = run_math(backend, items, max_new_tokens=32)
    assert metrics == {"accuracy": 0.5}
    assert [r.verdict for r in results] == ["correct"] * 3 + ["wrong"] * 3


@pytest.mark.parametrize(
    ("kind", "passing", "failing"),
    [
        ("lowercase", "all quiet here.", "All quiet here."),
        ("uppercase", "ALL QUIET, 100%.", "ALL QUIET, mostly."),
        ("no_commas", "one two three", "one, two"),
        ("quoted", '"a quoted answer"', '"not closed'),
        ("json", '```json\n{"a": 1}\n```', "{a: 1}"),
        ("title", "<<Bees>>\nThey make honey.", "<Bees>\nThey make honey."),
    ],
)
def test_instruction_checkers_on_hand_written_replies(kind: str, passing: str, failing: str) -> None:
    items = generate_instruction_items(60)
    constraint = next(c for item in items for c in item.constraints if c.kind == kind)
    assert constraint.check(passing)
    assert not constraint.check(failing)


def test_parameterised_instruction_checkers() -> None:
    items = generate_instruction_items(60)
    constraints = {c.kind: c for item in items for c in item.constraints}
    bullets = constraints["bullets"]
    n = int(bullets.instruction.split("exactly ")[1].split()[0])
    assert bullets.check("\n".join(f"- point {i}" for i in range(n)))
    assert not bullets.check("\n".join(f"- point {i}" for i in range(n + 1)))
    max_words = constraints["max_words"]
    limit = int(max_words.instruction.split("fewer than ")[1].split()[0])
    assert max_words.check(" ".join(["word"] * (limit - 1)))
    assert not max_words.check(" ".join(["word"] * limit))
    keyword = constraints["include_keyword"].instruction.split("'")[1]
    assert constraints["include_keyword"].check(f"A {keyword.upper()} day.")
    assert not constraints["include_keyword"].check(f"A {keyword}s day.")  # whole words only


def test_instruction_prompts_never_combine_conflicting_constraints() -> None:
    items = generate_instruction_items(200)
    assert items == generate_instruction_items(200)
    assert {len(item.constraints) for item in items} == {1, 2}
    for item in items:
        if len(item.constraints) == 2:
            assert not item.constraints[0].slots & item.constraints[1].slots


def test_instruction_accuracy_counts_prompts_and_constraints() -> None:
    items = [i for i in generate_instruction_items(60) if len(i.constraints) == 2][:2]
    # Always lowercase with no commas: passes exactly the constraints that accept such a reply.
    reply = "a short reply"
    backend = ScriptedBackend(reply=lambda prompt: reply)
    metrics, results = run_instructions(backend, items, max_new_tokens=16)
    passed = [[c.check(reply) for c in item.constraints] for item in items]
    assert metrics["prompt_acc"] == sum(all(p) for p in passed) / 2
    assert metrics["instruction_acc"] == sum(map(sum, passed)) / 4
    assert all(r.reason for r in results)


def test_general_suite_score_is_the_mean_of_its_tasks() -> None:
    suite = get_suite("general", mc_items=6, gsm_items=4, if_items=4)
    answers = {item.question: item.answer for item in suite.math}
    backend = ScriptedBackend(
        reply=lambda prompt: next((f"#### {a}" for q, a in answers.items() if prompt.startswith(q)), "x"),
        score=lambda prompt, continuation: 0.0,  # every choice ties: the first is picked
    )
    result = suite.run(backend, limit=3, seed=1)
    mc_acc = sum(r.verdict == "correct" for r in result.items if r.meta["task"] == "mc") / 3
    assert result.meta["n_items"] == {"mc": 3, "gsm": 3, "ifeval": 3}
    assert result.metrics["gsm_accuracy"] == 1.0
    assert result.meta["components"] == {
        "mc": mc_acc,
        "gsm": 1.0,
        "ifeval": result.metrics["ifeval_prompt_acc"],
    }
    assert result.metrics["score"] == pytest.approx(sum(result.meta["components"].values()) / 3)


def test_single_task_suites_are_registered() -> None:
    suite = get_suite("general-mc", mc_items=5)
    assert suite.name == "general-mc" and suite.tasks == ("mc",)
    result = suite.run(ScriptedBackend(score=lambda p, c: 0.0))
    assert set(result.meta["components"]) == {"mc"}


def test_unknown_suite_and_bad_options_are_refused() -> None:
    with pytest.raises(UsageError) as info:
        get_suite("nope")
    assert str(info.value).startswith("unknown suite 'nope'; known: ")
    assert "general" in str(info.value) and "science" in str(info.value)
    with pytest.raises(UsageError, match=r"suite 'general': unknown option 'colour' \(its options: "):
        get_suite("general", colour="red")
    with pytest.raises(
        UsageError, match=r"suite 'world-general' needs option 'path': give it as world-general\.path="
    ):
        get_suite("world-general")


def test_limit_subsamples_with_the_seed() -> None:
    items = list(range(50))
    assert select_items(items, 5, 0) == select_items(items, 5, 0)
    assert select_items(items, 5, 0) != select_items(items, 5, 1)
    assert select_items(items, None, 0) == items
    assert sorted(select_items(items, 5, 3)) == select_items(items, 5, 3)
    with pytest.raises(UsageError):
        select_items(items, 0, 0)


def test_a_suite_declares_its_category_and_headline_where_it_registers() -> None:
    from skillmerge.evaluate.suites import CATEGORIES, HEADLINES, SUITES, register_suite, suite_category
    from skillmerge.evaluate.suites.base import SuiteResult

    def factory() -> object:
        raise AssertionError("not built here")

    register_suite("toy-accuracy", category="science", headline="accuracy")(factory)
    try:
        result = SuiteResult("toy-accuracy", {"accuracy": 0.25, "score": 0.9, "science": 0.8}, [], {})
        assert headline_score(result, "science") == 0.25  # the declared metric, not score or the category's
        assert suite_category("toy-accuracy") == "science"
        assert headline_score(SuiteResult("toy-accuracy", {"score": 0.9}, [], {})) is None  # no guessing
    finally:
        for table in (SUITES, CATEGORIES, HEADLINES):
            table.pop("toy-accuracy", None)
    # A result of a suite this process has not registered (read back from disk): its "score".
    assert headline_score(SuiteResult("elsewhere", {"score": 0.5, "f1": 0.1}, [], {})) == 0.5
    assert headline_score(SuiteResult("elsewhere", {"f1": 0.1}, [], {})) is None
    assert suite_category("elsewhere") is None
    assert suite_category("elsewhere", SuiteResult("elsewhere", {}, [], {"category": "coding"})) == "coding"
