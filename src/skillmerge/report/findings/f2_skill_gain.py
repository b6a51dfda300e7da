"""F2 per skill: ``(max PTM skill − θ_G skill) / (max RT skill − θ_G skill) ≥ 0.9`` (PTM = every merge method;
the ratio is undefined when RT gains nothing).
"""

from __future__ import annotations

from typing import Any

from skillmerge.report.findings.registry import Finding, RunView, register_finding
from skillmerge.report.findings.rules import EPS, finite, skill_rows, verdict_and_reason
from skillmerge.report.results import EvalRow, Results
from skillmerge.report.tables import best

KEY = "F2"
CLAIM = "best PTM reaches ≥ 90% of best RT's skill gain over θ_G"
GAIN_RATIO = 0.9


def judge(view: RunView) -> dict[str, Any]:
    return _f2(view.results, view.general)


def _f2(results: Results, general: EvalRow) -> dict[str, Any]:
    per_skill: dict[str, dict[str, Any]] = {}
    verdicts: list[bool | None] = []
    for skill in sorted(results.skill_scores):
        key = results.skill_scores[skill]
        g_skill = general.score(key)
        ptm = best(skill_rows(results, skill, family="ptm"), key)
        rt = best(skill_rows(results, skill, family="rt"), key)
        entry: dict[str, Any] = {
            "score": key,
            "theta_G_skill": g_skill,
            "ptm_id": ptm.id if ptm else None,
            "ptm_skill": ptm.score(key) if ptm else None,
            "rt_id": rt.id if rt else None,
            "rt_skill": rt.score(key) if rt else None,
            "gain_ptm": None,
            "gain_rt": None,
            "ratio": None,
        }
        if not finite(g_skill):
            entry.update(holds=None, reason=f"θ_G has no {key} score")
        elif ptm is None or rt is None:
            missing = [f"no {name} row" for name, row in (("PTM", ptm), ("RT", rt)) if row is None]
            entry.update(holds=None, reason=", ".join(missing))
        else:
            entry["gain_ptm"] = entry["ptm_skill"] - g_skill
            entry["gain_rt"] = entry["rt_skill"] - g_skill
            if entry["gain_rt"] <= 0:
                entry.update(holds=None, reason="RT does not improve on θ_G")
            else:
                entry["ratio"] = entry["gain_ptm"] / entry["gain_rt"]
                entry["holds"] = entry["ratio"] >= GAIN_RATIO - EPS
        per_skill[skill] = entry
        verdicts.append(entry["holds"])
    holds, reason = verdict_and_reason(per_skill, verdicts, "no skills in the run")
    ratios = [e["ratio"] for e in per_skill.values() if e["ratio"] is not None]
    out: dict[str, Any] = {
        "holds": holds,
        "claim": CLAIM,
        "min_ratio": min(ratios, default=None),
        "per_skill": per_skill,
    }
    if reason is not None:
        out["reason"] = reason
    return out


def summary(f: dict[str, Any]) -> list[str]:
    """The key numbers of F2, one phrase each."""
    parts: list[str] = []
    for skill, e in f.get("per_skill", {}).items():
        if e["gain_ptm"] is None:
            parts.append(f"{skill}: n.a. ({e['reason']})")
            continue
        ratio = f"ratio {e['ratio']:.2f}" if e["ratio"] is not None else e["reason"]
        parts.append(f"{skill}: PTM gain {e['gain_ptm']:+.1f} vs RT {e['gain_rt']:+.1f} ({ratio})")
    return parts


NAME = "ptm_matches_rt_gain"
FINDING = register_finding(Finding(KEY, NAME, CLAIM, judge, summary))
