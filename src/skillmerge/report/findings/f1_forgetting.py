"""F1 per skill: the best CFT row loses ≥ 10% of θ_G's general score, the best task-arithmetic PTM row loses
≤ 2% (loss = ``(G0 − g) / G0``). Reported beside it, not judged: the task-arithmetic row that loses least
while reaching ≥ 90% of RT's skill gain (``ptm_at_rt_gain``), i.e. where the trade-off sits.
"""

from __future__ import annotations

from typing import Any

from skillmerge.report.findings.registry import Finding, RunView, register_finding, unknown
from skillmerge.report.findings.rules import (
    EPS,
    finite,
    relative_loss,
    scored,
    skill_rows,
    value_of,
    verdict_and_reason,
)
from skillmerge.report.results import EvalRow, Results
from skillmerge.report.tables import best

KEY = "F1"
CLAIM = "CFT loses ≥ 10% of θ_G's general score, PTM ≤ 2%"
CFT_MIN_LOSS = 0.10
PTM_MAX_LOSS = 0.02
GAIN_RATIO = 0.9


def judge(view: RunView) -> dict[str, Any]:
    return _f1(view.results, view.general)


def _f1(results: Results, general: EvalRow) -> dict[str, Any]:
    g0 = general.score("general")
    if not finite(g0) or g0 == 0:
        return unknown(KEY, "θ_G has no (non-zero) general score")
    per_skill: dict[str, dict[str, Any]] = {}
    verdicts: list[bool | None] = []
    for skill in sorted(results.skill_scores):
        key = results.skill_scores[skill]
        cft = best(skill_rows(results, skill, family="cft"), key)
        ptm = best(skill_rows(results, skill, method="ptm:task_arithmetic"), key)
        entry: dict[str, Any] = {
            "theta_G_general": g0,
            "cft_id": cft.id if cft else None,
            "cft_general": cft.score("general") if cft else None,
            "ptm_id": ptm.id if ptm else None,
            "ptm_omega": ptm.omega if ptm else None,
            "ptm_general": ptm.score("general") if ptm else None,
        }
        entry["cft_loss"] = relative_loss(entry["cft_general"], g0)
        entry["ptm_loss"] = relative_loss(entry["ptm_general"], g0)
        entry["ptm_at_rt_gain"] = _ptm_at_rt_gain(results, skill, key, general)
        if entry["cft_loss"] is None or entry["ptm_loss"] is None:
            missing = [
                f"no {name} row" if row is None else f"{name} row has no general score"
                for name, row, loss in (
                    ("CFT", cft, entry["cft_loss"]),
                    ("task_arithmetic PTM", ptm, entry["ptm_loss"]),
                )
                if loss is None
            ]
            entry.update(holds=None, reason=", ".join(missing))
        else:
            entry["holds"] = (
                entry["cft_loss"] >= CFT_MIN_LOSS - EPS and entry["ptm_loss"] <= PTM_MAX_LOSS + EPS
            )
        per_skill[skill] = entry
        verdicts.append(entry["holds"])
    holds, reason = verdict_and_reason(per_skill, verdicts, "no skills in the run")
    judged = [e for e in per_skill.values() if e["holds"] is not None]
    out: dict[str, Any] = {
        "holds": holds,
        "claim": CLAIM,
        "theta_G_general": g0,
        "min_cft_loss": min((e["cft_loss"] for e in judged), default=None),
        "max_ptm_loss": max((e["ptm_loss"] for e in judged), default=None),
        "per_skill": per_skill,
    }
    if reason is not None:
        out["reason"] = reason
    return out


def _ptm_at_rt_gain(results: Results, skill: str, key: str, general: EvalRow) -> dict[str, Any] | None:
    """Context for F1 (not part of its verdict): of the task-arithmetic rows that reach ≥ 90% of the best RT
    row's skill gain over θ_G, the one that loses the least general score (``None`` without such a row)."""
    g0, s0 = general.score("general"), general.score(key)
    rt = best(skill_rows(results, skill, family="rt"), key)
    if rt is None or not finite(s0) or not finite(rt.score(key)) or not finite(g0) or not g0:
        return None
    gain_rt = float(rt.score(key)) - float(s0)  # type: ignore[arg-type]
    if gain_rt <= 0:
        return None
    rows = [
        r
        for r in scored(skill_rows(results, skill, method="ptm:task_arithmetic"), key)
        if value_of(r, key) - float(s0) >= GAIN_RATIO * gain_rt - EPS  # type: ignore[arg-type]
    ]
    if not rows:
        return None
    row = max(rows, key=lambda r: (value_of(r, "general"), value_of(r, key)))
    return {
        "id": row.id,
        "omega": row.omega,
        "skill": value_of(row, key),
        "general": value_of(row, "general"),
        "loss": relative_loss(value_of(row, "general"), g0),
    }


def summary(f: dict[str, Any]) -> list[str]:
    """The key numbers of F1, one phrase each."""
    parts: list[str] = []
    for skill, e in f.get("per_skill", {}).items():
        if e["holds"] is None:
            parts.append(f"{skill}: n.a. ({e['reason']})")
            continue
        omega = "" if e["ptm_omega"] is None else f" (ω {e['ptm_omega']:g})"
        text = f"{skill}: CFT loses {100 * e['cft_loss']:.1f}%, "
        text += f"PTM{omega} loses {100 * e['ptm_loss']:.1f}%"
        near = e.get("ptm_at_rt_gain")
        if near and near["id"] != e["ptm_id"]:
            at = "" if near["omega"] is None else f" at ω {near['omega']:g}"
            text += f" (PTM{at}, with ≥ 90% of RT's skill gain, loses {100 * near['loss']:.1f}%)"
        parts.append(text)
    return parts


NAME = "cft_forgets_ptm_keeps"
FINDING = register_finding(Finding(KEY, NAME, CLAIM, judge, summary))
