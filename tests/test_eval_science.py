"""Science suite: SQuAD-style normalisation, exact match and token F1, offline items, SciRIFF refusal."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from skillmerge.errors import UsageError
from skillmerge.evaluate.suites import get_suite
from skillmerge.evaluate.suites.base import Conversation, GenerationParams
from skillmerge.evaluate.suites.science import (
    exact_match,
    generate_science_items,
    load_sciriff,
    normalize_answer,
    short_answer,
    token_f1,
)


class ReplyBackend:
    """Replies computed from the user message; no log-likelihoods needed here."""

    name = "reply"

    def __init__(self, reply: Callable[[str], str]) -> None:
        self.reply = reply

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[list[str]]:
        return [[self.reply(c[-1]["content"])] * params.n for c in conversations]

    def loglikelihood(self, requests: Sequence[tuple[Conversation, str]]) -> list[float]:
        raise AssertionError("the science suite does not score by log-likelihood")


def test_normalisation_drops_case_punctuation_and_articles() -> None:
    assert normalize_answer("  The Red-Fox, an  animal! ") == "redfox animal"
    assert normalize_answer("A") == ""


@pytest.mark.parametrize(
    ("prediction", "golds", "em", "f1"),
    [
        ("the red fox", ["red fox jumps"], 0.0, 0.8),  # P = 2/2, R = 2/3 → 2·(2/3)/(5/3)
        ("Red fox.", ["red fox"], 1.0, 1.0),
        ("fox fox fox", ["fox"], 0.0, 0.5),  # overlap counts multiplicity: P = 1/3, R = 1
        ("blue whale", ["red fox"], 0.0, 0.0),
        ("42 kelvin", ["42", "42 kelvin"], 1.0, 1.0),  # best gold wins
        ("42", ["42 kelvin"], 0.0, 2 / 3),  # P = 1, R = 1/2
        ("", ["red"], 0.0, 0.0),
        ("the", ["a"], 1.0, 1.0),  # both normalise to nothing
    ],
)
def test_exact_match_and_token_f1_on_hand_computed_cases(
    prediction: str, golds: list[str], em: float, f1: float
) -> None:
    assert exact_match(prediction, golds) == em
    assert token_f1(prediction, golds) == pytest.approx(f1)


def test_short_answer_takes_the_first_line_without_prefix() -> None:
    assert short_answer("Answer: 42 kelvin.\nBecause the passage says so.") == "42 kelvin"
    assert short_answer("\n\nThe answer is arc melting") == "arc melting"
    assert short_answer("   ") == ""


def test_offline_items_are_fixed_and_answerable_from_the_passage() -> None:
    items = generate_science_items(60)
    assert items == generate_science_items(60)
    assert len(items) == 60 and len({i.id for i in items}) == 60
    assert {i.kind for i in items} == {"field", "assay", "trial", "materials", "exoplanet", "ml"}
    for item in items:
        assert item.answers[0] in item.passage, (item.question, item.answers)
    assert generate_science_items(61)[:60] == items  # a larger set extends, never reshuffles


def test_science_suite_scores_an_oracle_and_a_silent_model() -> None:
    suite = get_suite("science", n_items=12)
    answer_of = {(i.question, i.passage): i.answers[0] for i in suite.items}

    def oracle(prompt: str) -> str:
        return next(f"Answer: {a}." for (q, p), a in answer_of.items() if p in prompt and prompt.endswith(q))

    result = suite.run(ReplyBackend(oracle))
    assert result.metrics == {"em": 1.0, "f1": 1.0, "score": 1.0}
    assert result.meta["components"] == {"science-rc": 1.0}
    assert all(r.verdict == "exact" for r in result.items)
    silent = suite.run(ReplyBackend(lambda prompt: ""), limit=5, seed=3)
    assert silent.metrics == {"em": 0.0, "f1": 0.0, "score": 0.0}
    assert silent.meta["n_items"] == 5


def test_sciriff_refuses_offline_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError) as info:
        load_sciriff()
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("sciriff: allenai/SciRIFF needs the Hugging Face hub")
    with pytest.raises(UsageError, match="sciriff"):
        get_suite("sciriff").run(ReplyBackend(lambda prompt: ""))
