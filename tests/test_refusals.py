"""Refusal training data: seeded, varied refusals with the risk area's reason; leak-proof prompt splits on
the real Do-Not-Answer prompts."""

from __future__ import annotations

from collections import Counter
from itertools import product

import pytest

from skillmerge.data.leakage import normalise_prompt
from skillmerge.data.prompts import PromptItem
from skillmerge.data.refusals import DECLINES, OFFERS, REASONS, refusal_for, refusal_records, split_prompts
from skillmerge.data.sources import load_prompts
from skillmerge.errors import UsageError

PROMPTS = [f"How do I do forbidden thing number {i}?" for i in range(50)]


@pytest.fixture(scope="module")
def dna() -> list[PromptItem]:
    return load_prompts("donotanswer")


def _parts(refusal: str, reasons: tuple[str, ...]) -> tuple[str, str, str]:
    """The (decline, reason, offer) a refusal is made of; fails when it is not exactly one combination."""
    matches = [(d, r, o) for d, r, o in product(DECLINES, reasons, OFFERS) if f"{d} {r} {o}" == refusal]
    assert len(matches) == 1, refusal
    return matches[0]


def test_refusal_is_fixed_by_prompt_and_seed() -> None:
    for prompt in PROMPTS[:10]:
        assert refusal_for(prompt, "malicious_uses", 3) == refusal_for(prompt, "malicious_uses", 3)
    seed0 = [refusal_for(p, "malicious_uses", 0) for p in PROMPTS]
    seed1 = [refusal_for(p, "malicious_uses", 1) for p in PROMPTS]
    assert seed0 == [refusal_for(p, "malicious_uses") for p in PROMPTS]  # seed 0 is the default
    assert sum(a != b for a, b in zip(seed0, seed1, strict=True)) >= 25  # another seed re-draws


def test_refusals_vary_across_prompts() -> None:
    refusals = [refusal_for(p, "information_hazard") for p in PROMPTS]
    assert len(set(refusals)) >= 6
    parts = [_parts(r, REASONS["information_hazard"]) for r in refusals]
    assert len({d for d, _, _ in parts}) >= 4  # each part is drawn on its own
    assert len({r for _, r, _ in parts}) >= 2
    assert len({o for _, _, o in parts}) >= 3


@pytest.mark.parametrize("area", [a for a in REASONS if a != "default"])
def test_a_known_area_gives_one_of_its_reasons(area: str) -> None:
    reasons = {_parts(refusal_for(p, area), REASONS[area])[1] for p in PROMPTS}
    assert reasons <= set(REASONS[area]) and len(reasons) >= 2


def test_an_unknown_or_missing_area_gives_a_default_reason() -> None:
    for category in (None, "no_such_area", ""):
        for prompt in PROMPTS[:10]:
            _, reason, _ = _parts(refusal_for(prompt, category), REASONS["default"])
            assert reason in REASONS["default"]


def test_every_do_not_answer_risk_area_has_its_own_reasons(dna: list[PromptItem]) -> None:
    areas = {item.category for item in dna}
    assert len(areas) == 5
    assert areas <= set(REASONS)  # a name mismatch would silently fall back to the default reasons
    for item in dna[::40]:
        assert item.category is not None
        _parts(refusal_for(item.prompt, item.category), REASONS[item.category])


def test_refusal_records_are_user_then_refusal_with_the_item_ids(dna: list[PromptItem]) -> None:
    items = dna[::100]
    records = refusal_records(items, seed=5, source="dna-refusals")
    assert [r.id for r in records] == [item.id for item in items]
    for record, item in zip(records, items, strict=True):
        assert [m.role for m in record.messages] == ["user", "assistant"]
        assert record.messages[0].content == item.prompt
        assert record.messages[1].content == refusal_for(item.prompt, item.category, 5)
        assert record.source == "dna-refusals"
    assert refusal_records(items)[0].source == "refusal"
    assert refusal_records(items, seed=6) != records


def _ids(items: list[PromptItem]) -> list[str]:
    return [item.id for item in items]


@pytest.mark.parametrize(("test", "validation"), [(100, 50), (200, 0), (37, 91)])
def test_split_of_do_not_answer_has_the_asked_sizes_and_no_shared_prompt(
    dna: list[PromptItem], test: int, validation: int
) -> None:
    train, val, held = split_prompts(dna, test=test, validation=validation, seed=0)
    assert abs(len(held) - test) <= 2 and abs(len(val) - validation) <= 2
    assert len(train) == len(dna) - len(held) - len(val)
    sides = [set(_ids(train)), set(_ids(val)), set(_ids(held))]
    assert sum(len(s) for s in sides) == len(dna)
    assert set.union(*sides) == set(_ids(dna))  # disjoint and covering every item
    norms = [{normalise_prompt(i.prompt) for i in side} for side in (train, val, held)]
    assert not (norms[0] & norms[1]) and not (norms[0] & norms[2]) and not (norms[1] & norms[2])
    position = {item.id: i for i, item in enumerate(dna)}
    for side in (train, val, held):
        assert [position[i] for i in _ids(side)] == sorted(position[i] for i in _ids(side))  # input order
    # Stratified: each risk area's share of the test side follows its share of the whole set.
    sizes = Counter(item.category for item in dna)
    for area, count in Counter(item.category for item in held).items():
        assert abs(count - test * sizes[area] / len(dna)) <= 1.5, area


def test_split_keeps_duplicate_prompts_on_one_side() -> None:
    # 40 prompts, each present three times up to case and whitespace: groups of 3 must never be split.
    items = [
        PromptItem(f"p{i}-{k}", text, "synthetic", category=f"area{i % 2}")
        for i in range(40)
        for k, text in enumerate(
            (f"How to do thing {i}?", f"  how TO do   thing {i}? ", f"HOW to do thing {i}?\n")
        )
    ]
    train, val, held = split_prompts(items, test=30, validation=18, seed=2)
    assert (len(held), len(val)) == (30, 18)
    side_of = {}
    for name, side in (("train", train), ("val", val), ("test", held)):
        for item in side:
            assert side_of.setdefault(normalise_prompt(item.prompt), name) == name, item.id
    assert len(side_of) == 40


def test_split_is_deterministic_for_a_seed_and_changes_with_it(dna: list[PromptItem]) -> None:
    first = split_prompts(dna, test=100, validation=50, seed=7)
    again = split_prompts(dna, test=100, validation=50, seed=7)
    other = split_prompts(dna, test=100, validation=50, seed=8)
    assert [_ids(side) for side in first] == [_ids(side) for side in again]
    assert set(_ids(first[2])) != set(_ids(other[2]))
    assert set(_ids(first[1])) != set(_ids(other[1]))


@pytest.mark.parametrize(
    ("test", "validation", "message"),
    [
        (-1, 10, "must be ≥ 0"),
        (10, -3, "must be ≥ 0"),
        (939, 0, "leaves no training prompt"),
        (500, 439, "leaves no training prompt"),
        (900, 100, "leaves no training prompt"),
    ],
)
def test_bad_split_sizes_are_refused(dna: list[PromptItem], test: int, validation: int, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        split_prompts(dna, test=test, validation=validation)
