"""Train/validation splits: deterministic, disjoint by identity and by normalised prompt, stratified."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skillmerge.data.leakage import normalise_prompt
from skillmerge.data.records import ChatRecord, Message
from skillmerge.data.splits import train_val_split
from skillmerge.errors import UsageError


def _rec(prompt: str, rid: str, source: str | None = None) -> ChatRecord:
    return ChatRecord((Message("user", prompt), Message("assistant", "ok")), id=rid, source=source)


def _unique(n: int, source: str | None = None) -> list[ChatRecord]:
    return [_rec(f"question number {i} from {source}", f"{source}-{i}", source) for i in range(n)]


def test_fraction_split_is_exact_disjoint_and_covers_everything() -> None:
    records = _unique(100)
    train, val = train_val_split(records, val_fraction=0.1, seed=0)
    assert (len(train), len(val)) == (90, 10)
    assert {r.id for r in train}.isdisjoint(r.id for r in val)
    assert sorted(r.id for r in train + val) == sorted(r.id for r in records)
    assert [r.id for r in train] == [r.id for r in records if r in train]  # input order kept


def test_count_split_and_determinism() -> None:
    records = _unique(50)
    train, val = train_val_split(records, val_count=7, seed=3)
    again = train_val_split(records, val_count=7, seed=3)
    other = train_val_split(records, val_count=7, seed=4)
    assert len(val) == 7
    assert [r.id for r in val] == [r.id for r in again[1]]
    assert {r.id for r in val} != {r.id for r in other[1]}
    assert len(train) == 43


def test_duplicate_prompts_never_straddle_the_split() -> None:
    records = _unique(40)
    variants = [
        "How Do I sort a list?",
        "how do i  sort a list?",
        "  HOW DO I SORT A LIST?\n",
        "how do I\tsort a list?",
    ]
    records += [_rec(v, f"dup-{i}") for i, v in enumerate(variants)]
    for seed in range(30):
        train, val = train_val_split(records, val_fraction=0.25, seed=seed)
        dup_sides = {("val" if r in val else "train") for r in records if r.id.startswith("dup")}  # type: ignore[union-attr]
        assert len(dup_sides) == 1, seed
        assert len(train) + len(val) == len(records)


def test_the_same_object_listed_twice_stays_on_one_side() -> None:
    records = _unique(20)
    shared = _rec("a prompt without duplicates", "twice")
    records += [shared, shared]
    for seed in range(20):
        train, val = train_val_split(records, val_count=4, seed=seed)
        assert not (any(r is shared for r in train) and any(r is shared for r in val))
        assert len(val) == 4


def test_stratified_split_keeps_proportions() -> None:
    records = _unique(80, "code") + _unique(20, "math")
    train, val = train_val_split(records, val_fraction=0.2, seed=1, stratify_by=lambda r: r.source)
    assert Counter(r.source for r in val) == {"code": 16, "math": 4}
    assert Counter(r.source for r in train) == {"code": 64, "math": 16}


@settings(max_examples=50, deadline=None)
@given(
    prompts=st.lists(
        st.sampled_from(["a b", "A  b", "c", "C ", "d e f", "g", "h", "i", "j j"]), min_size=2, max_size=40
    ),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 1000),
)
def test_no_normalised_prompt_is_on_both_sides(prompts: list[str], fraction: float, seed: int) -> None:
    records = [_rec(p, str(i)) for i, p in enumerate(prompts)]
    if len({normalise_prompt(p) for p in prompts}) < 2:
        return  # one prompt group cannot be split
    train, val = train_val_split(records, val_fraction=fraction, seed=seed)
    assert val and train
    assert {normalise_prompt(r.prompt) for r in train}.isdisjoint(normalise_prompt(r.prompt) for r in val)
    assert sorted(r.id for r in train + val) == sorted(r.id for r in records)  # type: ignore[type-var]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of"),
        ({"val_fraction": 0.1, "val_count": 2}, "exactly one of"),
        ({"val_fraction": 1.0}, r"val_fraction 1\.0"),
        ({"val_fraction": 0.0}, r"val_fraction 0\.0"),
        ({"val_count": 10}, r"val_count 10: expected an integer in \[1, 9\]"),
        ({"val_count": 0}, "val_count 0"),
    ],
)
def test_bad_split_arguments_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        train_val_split(_unique(10), seed=0, **kwargs)  # type: ignore[arg-type]


def test_a_single_prompt_group_cannot_be_split() -> None:
    records = [_rec("same", str(i)) for i in range(5)]
    with pytest.raises(UsageError, match="validation would take every record"):
        train_val_split(records, val_count=1, seed=0)
