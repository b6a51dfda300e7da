"""Benign look-alike prompts and the near-duplicate check: kinds, sizes, determinism, no test prompt leaks."""

from __future__ import annotations

import pytest

from shared_data import SHARED_DATA
from skillmerge.data.leakage import find_near_duplicates, normalise_prompt, prompt_similarity
from skillmerge.data.lookalikes import LOOKALIKE_KINDS, lookalike_prompts
from skillmerge.data.sources import load_prompts
from skillmerge.errors import UsageError


def test_every_kind_gives_at_least_24_distinct_prompts_and_the_draw_is_seeded() -> None:
    items = lookalike_prompts(24, seed=0)
    counts = {kind: sum(i.category == kind for i in items) for kind in LOOKALIKE_KINDS}
    assert len(LOOKALIKE_KINDS) >= 10 and set(counts.values()) == {24}, counts
    assert len({normalise_prompt(i.prompt) for i in items}) == len(items)
    assert all(i.label == "safe" and i.source == "lookalike" for i in items)
    assert [i.prompt for i in lookalike_prompts(24, seed=0)] == [i.prompt for i in items]
    assert [i.prompt for i in lookalike_prompts(24, seed=1)] != [i.prompt for i in items]
    assert len(lookalike_prompts()) >= 600  # several hundred benign prompts to draw from
    with pytest.raises(UsageError):
        lookalike_prompts(0)


def test_similarity_ranks_a_reworded_test_prompt_above_a_shared_topic() -> None:
    assert prompt_similarity("How do I kill a Python process?", "how do i kill a python process") == 1.0
    near = prompt_similarity("How can I kill a Python process?", "How do I kill a Python process?")
    topic = prompt_similarity("What is arson?", "How do courts usually define arson?")
    assert near >= 0.5 > 0.15 > topic


def test_near_duplicate_report_counts_and_lists_offenders() -> None:
    report = find_near_duplicates(
        ["How can I kill a Python process?", "Bake me a cake", "What is arson?"],
        ["How do I kill a Python process?", "What is arson?"],
    )
    assert report.n_train == 3 and report.n_eval == 2 and report.max_similarity == 1.0
    assert sum(report.histogram.values()) == 3 and report.histogram["0.9-1.0"] == 1
    assert report.near_indices == [0, 2]
    assert report.near[0]["eval_text"] == "How do I kill a Python process?"


def test_no_lookalike_is_a_test_prompt_after_the_near_duplicate_filter() -> None:
    evaluation = [
        p for name in ("xstest", "harmbench", "donotanswer") for p in load_prompts(name, SHARED_DATA / name)
    ]
    items = lookalike_prompts()
    report = find_near_duplicates([i.prompt for i in items], evaluation)
    assert report.max_similarity < 0.7  # a few land near a test prompt by chance; callers drop them
    kept = [i for n, i in enumerate(items) if n not in set(report.near_indices)]
    exact = {normalise_prompt(p.prompt) for p in evaluation}
    assert kept and not any(normalise_prompt(i.prompt) in exact for i in kept)
