"""What the findings share: float slack, three-valued verdicts, row selection, relative loss, formatting."""

from __future__ import annotations

import math
from typing import Any

from skillmerge.report.results import EvalRow, Results
from skillmerge.report.tables import MISSING

EPS = 1e-9  # float slack on every threshold: 45 / 50 must count as a 10% loss


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def every(verdicts: list[bool | None]) -> bool | None:
    """Three-valued AND: False beats None beats True; no verdict at all is None."""
    if any(v is False for v in verdicts):
        return False
    if not verdicts or any(v is None for v in verdicts):
        return None
    return True


def some(verdicts: list[bool | None]) -> bool | None:
    """Three-valued OR: True beats None beats False; no verdict at all is None."""
    if any(v is True for v in verdicts):
        return True
    if not verdicts or any(v is None for v in verdicts):
        return None
    return False


def skill_rows(
    results: Results, skill: str, *, family: str | None = None, method: str | None = None
) -> list[EvalRow]:
    """Single-skill test rows of ``skill`` of one family (``ptm``, ``rt`` …) or exact method.

    The ``ptm`` family here means merges of θ_D: WiSE-FT rows (θ_G + ω·(θ_CFT − θ_G)) are built from the CFT
    model, cost a CFT training and equal CFT at ω = 1, so they only count when asked for by ``method``.
    """
    return [
        r
        for r in results.test_rows()
        if r.skill == skill
        and r.method != "multi_skill"
        and (family is None or r.family == family)
        and (method is None or r.method == method)
        and (method is not None or family != "ptm" or r.method != "ptm:wise_ft")
    ]


def relative_loss(value: float | None, baseline: float | None) -> float | None:
    """Relative loss ``(baseline − value) / baseline``; None when undefined."""
    if not finite(value) or not finite(baseline) or baseline == 0:
        return None
    return (baseline - value) / baseline  # type: ignore[operator]


def verdict_and_reason(
    entries: dict[str, dict[str, Any]], verdicts: list[bool | None], none_reason: str
) -> tuple[bool | None, str | None]:
    holds = every(verdicts)
    if holds is not None:
        return holds, None
    unjudged = [f"{name} ({e['reason']})" for name, e in entries.items() if e.get("holds") is None]
    return None, "; ".join(unjudged) if unjudged else none_reason


def scored(rows: list[EvalRow], key: str) -> list[EvalRow]:
    return [r for r in rows if finite(r.score(key)) and finite(r.score("general"))]


def value_of(row: EvalRow, key: str) -> float:
    """A score known to be present (rows filtered by :func:`scored`)."""
    return float(row.scores[key])  # type: ignore[arg-type]


def num(value: float | None, fmt: str = "{:.1f}") -> str:
    return MISSING if value is None else fmt.format(value)
