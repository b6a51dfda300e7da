"""Nested subsamples for data-size sweeps: every smaller sample is a subset of every larger one.

Each task (``task_of(record)``, by default ``record.source``) gets one permutation drawn from a generator
seeded by ``(seed, task)``; a sample keeps a prefix of each task's permutation. Prefixes of one order are
nested by construction, and a task's order does not depend on which other tasks are present.

- per-task caps: a task with ``N_t`` records contributes ``min(cap, N_t)``;
- percentages: a task contributes ``⌊p · N_t / 100⌋`` (per task when ``task_of`` is given, else over all).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable, Sequence
from fractions import Fraction

from skillmerge.data.records import ChatRecord
from skillmerge.errors import UsageError

DEFAULT_CAPS: tuple[int, ...] = (100, 200, 500, 1000, 2500)
DEFAULT_PERCENTS: tuple[int, ...] = (20, 40, 60, 80, 100)

TaskOf = Callable[[ChatRecord], Hashable]


def record_source(record: ChatRecord) -> Hashable:
    return record.source


def _permuted_tasks(records: Iterable[ChatRecord], seed: int, task_of: TaskOf) -> list[list[ChatRecord]]:
    """Records grouped by task (first-appearance order), each group in its seeded random order."""
    groups: dict[Hashable, list[ChatRecord]] = {}
    for record in records:
        groups.setdefault(task_of(record), []).append(record)
    permuted = []
    for task, group in groups.items():
        # str seeds hash with SHA-512 in `random`, so the order is stable across processes and platforms.
        random.Random(f"{seed}:{task!r}").shuffle(group)
        permuted.append(group)
    return permuted


def nested_caps(
    records: Iterable[ChatRecord],
    caps: Sequence[int] = DEFAULT_CAPS,
    *,
    seed: int,
    task_of: TaskOf = record_source,
) -> dict[int, list[ChatRecord]]:
    """``{cap: sample}`` with at most ``cap`` records per task; ``sample[a] ⊆ sample[b]`` when ``a ≤ b``."""
    for cap in caps:
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise UsageError(f"per-task cap {cap!r}: expected a positive integer")
    tasks = _permuted_tasks(records, seed, task_of)
    return {cap: [r for group in tasks for r in group[:cap]] for cap in sorted(caps)}


def nested_percentages(
    records: Iterable[ChatRecord],
    percents: Sequence[float] = DEFAULT_PERCENTS,
    *,
    seed: int,
    task_of: TaskOf | None = None,
) -> dict[float, list[ChatRecord]]:
    """``{p: sample}`` keeping ``⌊p·N_t/100⌋`` records of each task (one task unless ``task_of``)."""
    for p in percents:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 100:
            raise UsageError(f"percentage {p!r}: expected a number in (0, 100]")
    tasks = _permuted_tasks(records, seed, task_of or (lambda _record: None))
    # Exact decimal arithmetic: 100% is exactly N and 29% of 100 is 29 (float math gives 28.999...).
    shares = {p: Fraction(repr(p)) / 100 for p in percents}
    return {p: [r for group in tasks for r in group[: int(shares[p] * len(group))]] for p in sorted(percents)}
