"""F6 per skill and m ∈ (linear, wise_ft): pairs (task-arithmetic row, m row) whose skill scores are within 5
points are matched; the matched pair with the highest skill score both reach (ties: higher sum) is compared;
without such a pair, m's general score is interpolated on its ω curve at the skill score of the highest task-
arithmetic row inside the curve's range (``interpolated: true``). Holds when task arithmetic's general score ≥
m's − 0.5 for every comparison; a method that cannot be compared makes the verdict unknown unless another
comparison fails.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from typing import Any

from skillmerge.report.findings.registry import Finding, RunView, register_finding
from skillmerge.report.findings.rules import EPS, every, scored, skill_rows, value_of
from skillmerge.report.results import EvalRow, Results

KEY = "F6"
CLAIM = "task arithmetic keeps general ability at least as well as linear and WiSE-FT at matched skill score"
MATCH_POINTS = 5.0
GENERAL_SLACK = 0.5
COMPARED_MERGES = ("linear", "wise_ft")


def judge(view: RunView) -> dict[str, Any]:
    return _f6(view.results)


def _f6(results: Results) -> dict[str, Any]:
    per_skill: dict[str, dict[str, dict[str, Any]]] = {}
    verdicts: list[bool | None] = []
    any_other = False
    for skill in sorted(results.skill_scores):
        key = results.skill_scores[skill]
        ta = scored(skill_rows(results, skill, method="ptm:task_arithmetic"), key)
        for merge in COMPARED_MERGES:
            other = scored(skill_rows(results, skill, method=f"ptm:{merge}"), key)
            if not other:
                continue
            any_other = True
            pairs = [
                (a, b)
                for a in ta
                for b in other
                if abs(value_of(a, key) - value_of(b, key)) <= MATCH_POINTS + EPS
            ]
            if not pairs:
                entry = _f6_interpolated(ta, other, key)
                if entry is None:
                    reason = "no task_arithmetic row" if not ta else f"no pair within {MATCH_POINTS:g} points"
                    entry = {"holds": None, "reason": reason}
                per_skill.setdefault(skill, {})[merge] = entry
                verdicts.append(entry["holds"])
                continue
            # The highest skill score both rows reach; ties: the higher sum.
            a, b = max(
                pairs,
                key=lambda p: (
                    min(value_of(p[0], key), value_of(p[1], key)),
                    value_of(p[0], key) + value_of(p[1], key),
                ),
            )
            margin = value_of(a, "general") - value_of(b, "general")
            entry = {
                "score": key,
                "ta_id": a.id,
                "ta_skill": a.score(key),
                "ta_general": a.score("general"),
                "other_id": b.id,
                "other_skill": b.score(key),
                "other_general": b.score("general"),
                "general_margin": margin,
                "holds": margin >= -GENERAL_SLACK - EPS,
            }
            per_skill.setdefault(skill, {})[merge] = entry
            verdicts.append(entry["holds"])
    holds = every(verdicts) if verdicts else None
    margins = [e["general_margin"] for m in per_skill.values() for e in m.values() if "general_margin" in e]
    out: dict[str, Any] = {
        "holds": holds,
        "claim": CLAIM,
        "min_general_margin": min(margins, default=None),
        "per_skill": per_skill,
    }
    if holds is None:
        out["reason"] = (
            "no linear or wise_ft PTM rows in the run"
            if not any_other
            else f"no task_arithmetic row within {MATCH_POINTS:g} points of a linear or wise_ft row"
        )
    return out


def _f6_interpolated(ta: list[EvalRow], other: list[EvalRow], key: str) -> dict[str, Any] | None:
    """No row pair within 5 points: read the other method's general score at a task-arithmetic row's skill
    score off its ω curve (straight lines between the ω points of one size and seed; where several segments
    reach that skill score, the best general score counts, so the comparison never favours task arithmetic).
    The task-arithmetic row with the highest skill score inside the curve's range is compared; ``None`` when
    no task-arithmetic row lies inside it.
    """
    curves: dict[tuple[str | None, int | None], list[EvalRow]] = defaultdict(list)
    for row in other:
        if row.omega is not None:
            curves[(row.size, row.seed)].append(row)
    for a in sorted(ta, key=lambda r: -value_of(r, key)):
        target = value_of(a, key)
        found: list[tuple[float, EvalRow, EvalRow]] = []
        for curve in curves.values():
            points = sorted(curve, key=lambda r: r.omega or 0.0)
            for lo, hi in pairwise(points):
                s0, s1 = value_of(lo, key), value_of(hi, key)
                if min(s0, s1) - EPS <= target <= max(s0, s1) + EPS and s0 != s1:
                    t = (target - s0) / (s1 - s0)
                    found.append(
                        (
                            value_of(lo, "general") + t * (value_of(hi, "general") - value_of(lo, "general")),
                            lo,
                            hi,
                        )
                    )
        if not found:
            continue
        general, lo, hi = max(found, key=lambda f: f[0])
        margin = value_of(a, "general") - general
        return {
            "score": key,
            "ta_id": a.id,
            "ta_skill": a.score(key),
            "ta_general": a.score("general"),
            "other_id": f"{lo.id} .. {hi.id}",
            "other_skill": a.score(key),
            "other_general": general,
            "interpolated": True,
            "general_margin": margin,
            "holds": margin >= -GENERAL_SLACK - EPS,
        }
    return None


def summary(f: dict[str, Any]) -> list[str]:
    """The key numbers of F6, one phrase each."""
    parts: list[str] = []
    for skill, merges in f.get("per_skill", {}).items():
        for merge, e in merges.items():
            if e["holds"] is None:
                parts.append(f"{skill} vs {merge}: n.a. ({e['reason']})")
                continue
            matched = (
                f"interpolated at skill {e['ta_skill']:.1f}"
                if e.get("interpolated")
                else f"skill {e['ta_skill']:.1f} vs {e['other_skill']:.1f}"
            )
            general = f"general {e['ta_general']:.1f} vs {e['other_general']:.1f}"
            parts.append(f"{skill} vs {merge}: {general} ({matched})")
    return parts


NAME = "task_arithmetic_keeps_general_best"
FINDING = register_finding(Finding(KEY, NAME, CLAIM, judge, summary))
