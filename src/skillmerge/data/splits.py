"""Train/validation splits that cannot leak: duplicate prompts never straddle the split.

Records are first grouped by :func:`~skillmerge.data.leakage.normalise_prompt` of their first user message
(records with no user message group by object identity), and whole groups are assigned to one side. The
same object listed twice (an up-sampled mixture) has the same prompt, so it lands on one side too.

Validation target: ``round(val_fraction · N)`` clipped to [1, N−1], or ``val_count`` records, split across
strata in proportion to their sizes (largest remainder) when ``stratify_by`` is given. Within a stratum,
groups are visited in a seeded random order and taken while they fit the target, so the validation size
equals the target unless groups of duplicates cannot add up to it exactly (then it is slightly below, never
empty when the target is positive). Both sides keep the input order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence

from skillmerge.data.leakage import normalise_prompt
from skillmerge.data.records import ChatRecord
from skillmerge.errors import UsageError

StratumOf = Callable[[ChatRecord], Hashable]


def _prompt_groups(records: Sequence[ChatRecord]) -> list[list[int]]:
    """Indices of records grouped by normalised first user message, groups in first-appearance order."""
    groups: dict[tuple[str, object], list[int]] = {}
    for i, record in enumerate(records):
        prompt = normalise_prompt(record.prompt)
        key: tuple[str, object] = ("prompt", prompt) if prompt else ("object", id(record))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _allocate(total: int, sizes: dict[Hashable, int]) -> dict[Hashable, int]:
    """Split ``total`` over strata proportionally to ``sizes`` (largest-remainder rounding)."""
    n = sum(sizes.values())
    quotas = {s: total * size / n for s, size in sizes.items()}
    alloc = {s: int(q) for s, q in quotas.items()}
    by_remainder = sorted(sizes, key=lambda s: quotas[s] - alloc[s], reverse=True)
    for s in by_remainder[: total - sum(alloc.values())]:
        alloc[s] += 1
    return alloc


def _target(n: int, val_fraction: float | None, val_count: int | None) -> int:
    if (val_fraction is None) == (val_count is None):
        raise UsageError("give exactly one of val_fraction and val_count")
    if val_count is not None:
        if isinstance(val_count, bool) or not isinstance(val_count, int) or not 1 <= val_count < n:
            raise UsageError(f"val_count {val_count!r}: expected an integer in [1, {n - 1}] for {n} records")
        return val_count
    assert val_fraction is not None
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"val_fraction {val_fraction!r}: expected a number in (0, 1)")
    return min(n - 1, max(1, round(val_fraction * n)))  # both sides keep at least one record


def train_val_split(
    records: Sequence[ChatRecord],
    *,
    val_fraction: float | None = None,
    val_count: int | None = None,
    seed: int,
    stratify_by: StratumOf | None = None,
) -> tuple[list[ChatRecord], list[ChatRecord]]:
    """Split ``records`` into ``(train, val)``; deterministic for ``seed``; no prompt on both sides."""
    records = list(records)
    if len(records) < 2:
        raise UsageError(f"cannot split {len(records)} record(s) into train and validation")
    target = _target(len(records), val_fraction, val_count)
    groups = _prompt_groups(records)
    # A group's stratum is its first record's; duplicates of one prompt rarely span strata.
    stratum_of = stratify_by or (lambda _record: None)
    strata: dict[Hashable, list[list[int]]] = {}
    for group in groups:
        strata.setdefault(stratum_of(records[group[0]]), []).append(group)
    sizes = {s: sum(len(g) for g in gs) for s, gs in strata.items()}
    targets = _allocate(target, sizes)
    val_indices: set[int] = set()
    for stratum, stratum_groups in strata.items():
        want = targets[stratum]
        order = list(range(len(stratum_groups)))
        random.Random(f"{seed}:{stratum!r}").shuffle(order)
        taken = 0
        for g in order:
            if taken + len(stratum_groups[g]) <= want:
                val_indices.update(stratum_groups[g])
                taken += len(stratum_groups[g])
            if taken == want:
                break
        if taken == 0 and want > 0:  # every group is larger than the target: take the first one
            val_indices.update(stratum_groups[order[0]])
    if len(val_indices) == len(records):
        raise UsageError("validation would take every record (too few distinct prompts to split)")
    train = [r for i, r in enumerate(records) if i not in val_indices]
    val = [r for i, r in enumerate(records) if i in val_indices]
    return train, val
