"""Nested subsamples: smaller samples are subsets of larger ones, per-task counts are exact."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skillmerge.data.records import ChatRecord, Message
from skillmerge.data.subsample import DEFAULT_CAPS, nested_caps, nested_percentages
from skillmerge.errors import UsageError


def _records(sizes: dict[str, int]) -> list[ChatRecord]:
    out = []
    for task, n in sizes.items():
        out += [
            ChatRecord(
                (Message("user", f"{task} {i}"), Message("assistant", "a")), id=f"{task}-{i}", source=task
            )
            for i in range(n)
        ]
    return out


def _ids(records: list[ChatRecord]) -> set[str]:
    return {r.id for r in records if r.id is not None}


task_sizes = st.dictionaries(
    st.sampled_from(["code", "math", "chat", "safety"]), st.integers(0, 60), max_size=4
)


@settings(max_examples=60, deadline=None)
@given(
    sizes=task_sizes, caps=st.lists(st.integers(1, 80), min_size=1, max_size=5), seed=st.integers(0, 10**6)
)
def test_caps_are_nested_and_take_min_of_cap_and_task_size(
    sizes: dict[str, int], caps: list[int], seed: int
) -> None:
    samples = nested_caps(_records(sizes), caps, seed=seed)
    ordered = sorted(set(caps))
    assert list(samples) == ordered
    for small, large in pairwise(ordered):
        assert _ids(samples[small]) <= _ids(samples[large])
    for cap, sample in samples.items():
        assert len(_ids(sample)) == len(sample)  # no record twice
        assert Counter(r.source for r in sample) == {t: min(cap, n) for t, n in sizes.items() if n}


@settings(max_examples=60, deadline=None)
@given(
    sizes=task_sizes,
    percents=st.lists(st.integers(1, 100), min_size=1, max_size=5),
    seed=st.integers(0, 10**6),
    per_task=st.booleans(),
)
def test_percentages_are_nested_and_take_the_floor_share(
    sizes: dict[str, int], percents: list[int], seed: int, per_task: bool
) -> None:
    records = _records(sizes)
    task_of = (lambda r: r.source) if per_task else None
    samples = nested_percentages(records, percents, seed=seed, task_of=task_of)
    ordered = sorted(set(percents))
    for small, large in pairwise(ordered):
        assert _ids(samples[small]) <= _ids(samples[large])
    for p, sample in samples.items():
        if per_task:
            assert Counter(r.source for r in sample) == {
                t: p * n // 100 for t, n in sizes.items() if p * n // 100
            }
        else:
            assert len(sample) == p * len(records) // 100


def test_default_caps_on_a_large_and_a_small_task() -> None:
    samples = nested_caps(_records({"big": 3000, "small": 300}), seed=0)
    assert list(samples) == list(DEFAULT_CAPS)
    assert {cap: len(s) for cap, s in samples.items()} == {
        100: 200,
        200: 400,
        500: 800,
        1000: 1300,
        2500: 2800,
    }


def test_default_percentages_and_full_sample_is_everything() -> None:
    records = _records({"t": 37})
    samples = nested_percentages(records, seed=2)
    assert {p: len(s) for p, s in samples.items()} == {20: 7, 40: 14, 60: 22, 80: 29, 100: 37}
    assert _ids(samples[100]) == _ids(records)


def test_samples_are_deterministic_for_a_seed_and_vary_with_it() -> None:
    records = _records({"a": 50, "b": 50})
    first = nested_caps(records, [10], seed=1)[10]
    assert [r.id for r in first] == [r.id for r in nested_caps(records, [10], seed=1)[10]]
    assert _ids(first) != _ids(nested_caps(records, [10], seed=2)[10])


def test_a_tasks_sample_does_not_depend_on_the_other_tasks() -> None:
    alone = nested_caps(_records({"a": 50}), [10], seed=3)[10]
    together = nested_caps(_records({"b": 70, "a": 50}), [10], seed=3)[10]
    assert [r.id for r in alone] == [r.id for r in together if r.source == "a"]


def test_custom_task_key_groups_records() -> None:
    records = _records({"x": 30})
    samples = nested_caps(records, [4], seed=0, task_of=lambda r: int(r.id.split("-")[1]) % 3)  # type: ignore[union-attr]
    assert Counter(int(r.id.split("-")[1]) % 3 for r in samples[4]) == {0: 4, 1: 4, 2: 4}  # type: ignore[union-attr]


@pytest.mark.parametrize("cap", [0, -5, 2.5, True])
def test_bad_cap_is_refused(cap: object) -> None:
    with pytest.raises(UsageError, match="per-task cap"):
        nested_caps(_records({"a": 3}), [10, cap], seed=0)  # type: ignore[list-item]


@pytest.mark.parametrize("percent", [0, 101, -1, "50"])
def test_bad_percentage_is_refused(percent: object) -> None:
    with pytest.raises(UsageError, match=r"percentage .* expected a number in \(0, 100\]"):
        nested_percentages(_records({"a": 3}), [percent], seed=0)  # type: ignore[list-item]


def test_fractional_percentage_is_exact() -> None:
    samples = nested_percentages(_records({"t": 100}), [29.0, 12.5], seed=0)
    assert {p: len(s) for p, s in samples.items()} == {12.5: 12, 29.0: 29}
