"""95% bootstrap intervals for the findings, over test items, paired across models.

A finding's numbers come from aggregate scores (0-100) of a few dozen to a few hundred test items each, so one
item moves them by up to a point or more. The interval says how far: every replicate draws the items of each
suite with replacement — the *same* draw for every model evaluated on those items, so a difference between two
models (a loss, a gain, a ratio) keeps its pairing — recomputes each score as its aggregate does (100 · mean
over the category's suites of the mean item score), and judges every finding again on the replicate. The
interval of a number is the 2.5th–97.5th percentile of its replicates; ``holds`` stays the verdict on the
point estimate, with ``holds_share`` (the share of replicates in which the finding holds) beside it.

Only scores whose every component is the plain mean of its items are resampled (all built-in suites' are;
a suite whose score is computed otherwise, such as pass@k with k > 1, keeps its measured value in every
replicate, and the finding says which scores were resampled).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from skillmerge.report.results import EvalRow, ItemScores, Results

REPLICATES = 1000
LEVEL = 0.95


def _resampled_scores(row: EvalRow) -> dict[str, dict[str, ItemScores]]:
    """The scores of ``row`` that the bootstrap redraws: every one of their components has item scores."""
    return {
        score: suites
        for score, suites in row.items.items()
        if row.scores.get(score) is not None and len(suites) == row.components.get(score, -1)
    }


def replicate_scores(rows: list[EvalRow], replicates: int, seed: int) -> list[dict[str, np.ndarray]]:
    """For each row, ``{score: array of its replicate values}`` (0-100), one index draw per suite and item
    set shared by every row (paired)."""
    rng = np.random.default_rng(seed)
    draws: dict[tuple[str, str, int], np.ndarray] = {}
    keys = sorted(  # (suite, id digest, item count)
        {
            (suite, items.ids, len(items.scores))
            for row in rows
            for suites in _resampled_scores(row).values()
            for suite, items in suites.items()
        }
    )
    for key in keys:  # sorted: the same run gives the same intervals
        draws[key] = rng.integers(0, key[2], size=(replicates, key[2]))
    out: list[dict[str, np.ndarray]] = []
    for row in rows:
        values: dict[str, np.ndarray] = {}
        for score, suites in _resampled_scores(row).items():
            means = [
                np.asarray(items.scores)[draws[(suite, items.ids, len(items.scores))]].mean(axis=1)
                for suite, items in sorted(suites.items())
            ]
            values[score] = 100.0 * np.mean(means, axis=0)
        out.append(values)
    return out


def replicates_of(results: Results, replicates: int, seed: int) -> Iterator[Results]:
    """``replicates`` copies of ``results`` whose test rows carry resampled scores (validation rows and
    scores without item scores are kept as measured)."""
    rows = results.test_rows()
    drawn = replicate_scores(rows, replicates, seed)
    by_id = {row.id: values for row, values in zip(rows, drawn, strict=True) if values}
    for b in range(replicates):
        evals = []
        for row in results.evals:
            values = by_id.get(row.id) if row.split == "test" else None
            if values is None:
                evals.append(row)
                continue
            evals.append(replace(row, scores={**row.scores, **{k: float(v[b]) for k, v in values.items()}}))
        yield replace(results, evals=evals)


def numeric_leaves(value: Any, prefix: str = "") -> dict[str, float]:
    """``{"per_skill.safety.cft_loss": 0.27, ...}``: every finite number in a finding (booleans are not)."""
    out: dict[str, float] = {}
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if key in ("ci", "holds_share"):
                continue
            out.update(numeric_leaves(inner, f"{prefix}{key}."))
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        out[prefix.rstrip(".")] = float(value)
    return out


def with_intervals(
    results: Results,
    point: dict[str, dict[str, Any]],
    judge_all: Callable[[Results], dict[str, dict[str, Any]]],
    *,
    replicates: int = REPLICATES,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """``point`` (the findings on the measured scores) with ``ci`` and ``holds_share`` added to each
    finding, from ``judge_all`` run on ``replicates`` resampled copies of ``results``.

    ``ci`` maps each number of the finding (dotted path) to ``[low, high]``; it is ``None`` (with
    ``ci_reason``) when no test row has item scores or ``replicates`` is 0.
    """
    resampled = sorted({s for row in results.test_rows() for s in _resampled_scores(row)})
    if replicates <= 0 or not resampled:
        reason = "no bootstrap asked for" if replicates <= 0 else "no per-item test scores in the run"
        return {k: {**v, "ci": None, "ci_reason": reason} for k, v in point.items()}
    samples: dict[str, dict[str, list[float]]] = {key: {} for key in point}
    holds: dict[str, list[bool]] = {key: [] for key in point}
    for copy in replicates_of(results, replicates, seed):
        judged = judge_all(copy)
        for key, finding in judged.items():
            if key not in samples:
                continue
            for path, number in numeric_leaves(finding).items():
                samples[key].setdefault(path, []).append(number)
            if finding.get("holds") is not None:
                holds[key].append(bool(finding["holds"]))
    tail = 100.0 * (1.0 - LEVEL) / 2.0
    out: dict[str, dict[str, Any]] = {}
    for key, finding in point.items():
        ci = {
            path: [
                float(np.percentile(samples[key][path], tail)),
                float(np.percentile(samples[key][path], 100 - tail)),
            ]
            for path in numeric_leaves(finding)
            if samples[key].get(path)
        }
        share = sum(holds[key]) / len(holds[key]) if holds[key] else None
        out[key] = {
            **finding,
            "holds_share": share,
            "ci": ci,
            "ci_method": f"paired bootstrap over test items, {replicates} replicates, seed {seed}, "
            f"{LEVEL:.0%}; resampled scores: {', '.join(resampled)}",
        }
    return out
