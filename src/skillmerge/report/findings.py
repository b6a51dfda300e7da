"""The six findings of the Merge-to-Learn demo, judged on a collected run (test-split rows only).

Each finding is ``{"holds": True | False | None, "claim": str, ...numbers...}``; ``holds`` is ``None`` (with a
``"reason"``) when the run lacks the rows it needs. Scores are on 0-100; θ_G is the ``general`` row; a skill
is measured by its own score (``Results.skill_scores``); "best" is :func:`skillmerge.report.tables.best`
(highest skill score, ties: higher general, then fewer FLOPs).

- **F1** per skill: the best CFT row loses ≥ 10% of θ_G's general score, the best task-arithmetic PTM row
  loses ≤ 2% (loss = ``(G0 − g) / G0``). Reported beside it, not judged: the task-arithmetic row that loses
  least while reaching ≥ 90% of RT's skill gain (``ptm_at_rt_gain``), i.e. where the trade-off sits.
- **F2** per skill: ``(max PTM skill − θ_G skill) / (max RT skill − θ_G skill) ≥ 0.9`` (PTM = every merge
  method; the ratio is undefined when RT gains nothing).
- **F3** per skill and data size: θ_D's training tokens (a PTM row's cost; merging adds none) ÷ RT's training
  tokens ≤ 0.05; each side is the mean over the seeds evaluated at that size.
- **F4** safety skill: the best PTM row by the safety score scores above θ_G, and its exaggerated-refusal
  score stays within 5 points of θ_G's.
- **F5** for each (merge method, ω rule) of an all-skills merge: a skill's score in it vs its best
  single-skill PTM score with the same merge method; holds when some skill loses ≥ 1 point (the pairwise
  merges of the same method and rule are reported beside it, from
  :func:`~skillmerge.report.tables.interference_data`).
- **F6** per skill and m ∈ (linear, wise_ft): pairs (task-arithmetic row, m row) whose skill scores are within
  5 points are matched; the matched pair with the highest skill score both reach (ties: higher sum) is
  compared; without such a pair, m's general score is interpolated on its ω curve at the skill score of the
  highest task-arithmetic row inside the curve's range (``interpolated: true``). Holds when task
  arithmetic's general score ≥ m's − 0.5 for every comparison; a method that cannot be compared makes the
  verdict unknown unless another comparison fails.

"For every skill" verdicts combine three-valued: any failing skill → False; else any skill that cannot be
judged → None; else True. F5's "some skill loses" is the dual: any loss → True; else any unknown → None.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import pairwise
from typing import Any

from skillmerge.report.results import EvalRow, Results
from skillmerge.report.tables import MISSING, Table, best, interference_data

CFT_MIN_LOSS = 0.10
PTM_MAX_LOSS = 0.02
GAIN_RATIO = 0.9
TOKEN_RATIO = 0.05
OVER_REFUSAL_POINTS = 5.0
INTERFERENCE_POINTS = 1.0
MATCH_POINTS = 5.0
GENERAL_SLACK = 0.5
COMPARED_MERGES = ("linear", "wise_ft")
EPS = 1e-9  # float slack on every threshold: 45 / 50 must count as a 10% loss

CLAIMS = {
    "F1": "CFT loses ≥ 10% of θ_G's general score, PTM ≤ 2%",
    "F2": "best PTM reaches ≥ 90% of best RT's skill gain over θ_G",
    "F3": "PTM's training tokens ≤ 5% of RT's",
    "F4": "safety PTM raises refusal on harmful prompts while keeping look-alike compliance within 5 points "
    "of θ_G",
    "F5": "in the all-skills merge at least one skill loses to interference, visible in the pairwise table",
    "F6": "task arithmetic keeps general ability at least as well as linear and WiSE-FT at matched skill "
    "score",
}


def findings(results: Results, *, safety_skill: str | None = "safety") -> dict[str, dict[str, Any]]:
    """The six findings (keys ``F1`` … ``F6``) of ``results``; see the module docstring for each rule."""
    general = results.general()
    if general is None:
        return {key: _unknown(key, "no θ_G (general) test evaluation in the run") for key in CLAIMS}
    return {
        "F1": _f1(results, general),
        "F2": _f2(results, general),
        "F3": _f3(results),
        "F4": _f4(results, general, safety_skill),
        "F5": _f5(results),
        "F6": _f6(results),
    }


# ---------------------------------------------------------------------------------------------- helpers


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _unknown(key: str, reason: str) -> dict[str, Any]:
    return {"holds": None, "claim": CLAIMS[key], "reason": reason}


def _every(verdicts: list[bool | None]) -> bool | None:
    """Three-valued AND: False beats None beats True; no verdict at all is None."""
    if any(v is False for v in verdicts):
        return False
    if not verdicts or any(v is None for v in verdicts):
        return None
    return True


def _some(verdicts: list[bool | None]) -> bool | None:
    """Three-valued OR: True beats None beats False; no verdict at all is None."""
    if any(v is True for v in verdicts):
        return True
    if not verdicts or any(v is None for v in verdicts):
        return None
    return False


def _rows(
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


def _loss(value: float | None, baseline: float | None) -> float | None:
    """Relative loss ``(baseline − value) / baseline``; None when undefined."""
    if not _finite(value) or not _finite(baseline) or baseline == 0:
        return None
    return (baseline - value) / baseline  # type: ignore[operator]


def _verdict_and_reason(
    entries: dict[str, dict[str, Any]], verdicts: list[bool | None], none_reason: str
) -> tuple[bool | None, str | None]:
    holds = _every(verdicts)
    if holds is not None:
        return holds, None
    unjudged = [f"{name} ({e['reason']})" for name, e in entries.items() if e.get("holds") is None]
    return None, "; ".join(unjudged) if unjudged else none_reason


# ------------------------------------------------------------------------------------------------- F1


def _f1(results: Results, general: EvalRow) -> dict[str, Any]:
    g0 = general.score("general")
    if not _finite(g0) or g0 == 0:
        return _unknown("F1", "θ_G has no (non-zero) general score")
    per_skill: dict[str, dict[str, Any]] = {}
    verdicts: list[bool | None] = []
    for skill in sorted(results.skill_scores):
        key = results.skill_scores[skill]
        cft = best(_rows(results, skill, family="cft"), key)
        ptm = best(_rows(results, skill, method="ptm:task_arithmetic"), key)
        entry: dict[str, Any] = {
            "theta_G_general": g0,
            "cft_id": cft.id if cft else None,
            "cft_general": cft.score("general") if cft else None,
            "ptm_id": ptm.id if ptm else None,
            "ptm_omega": ptm.omega if ptm else None,
            "ptm_general": ptm.score("general") if ptm else None,
        }
        entry["cft_loss"] = _loss(entry["cft_general"], g0)
        entry["ptm_loss"] = _loss(entry["ptm_general"], g0)
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
    holds, reason = _verdict_and_reason(per_skill, verdicts, "no skills in the run")
    judged = [e for e in per_skill.values() if e["holds"] is not None]
    out: dict[str, Any] = {
        "holds": holds,
        "claim": CLAIMS["F1"],
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
    rt = best(_rows(results, skill, family="rt"), key)
    if rt is None or not _finite(s0) or not _finite(rt.score(key)) or not _finite(g0) or not g0:
        return None
    gain_rt = float(rt.score(key)) - float(s0)  # type: ignore[arg-type]
    if gain_rt <= 0:
        return None
    rows = [
        r
        for r in _scored(_rows(results, skill, method="ptm:task_arithmetic"), key)
        if _v(r, key) - float(s0) >= GAIN_RATIO * gain_rt - EPS  # type: ignore[arg-type]
    ]
    if not rows:
        return None
    row = max(rows, key=lambda r: (_v(r, "general"), _v(r, key)))
    return {
        "id": row.id,
        "omega": row.omega,
        "skill": _v(row, key),
        "general": _v(row, "general"),
        "loss": _loss(_v(row, "general"), g0),
    }


# ------------------------------------------------------------------------------------------------- F2


def _f2(results: Results, general: EvalRow) -> dict[str, Any]:
    per_skill: dict[str, dict[str, Any]] = {}
    verdicts: list[bool | None] = []
    for skill in sorted(results.skill_scores):
        key = results.skill_scores[skill]
        g_skill = general.score(key)
        ptm = best(_rows(results, skill, family="ptm"), key)
        rt = best(_rows(results, skill, family="rt"), key)
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
        if not _finite(g_skill):
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
    holds, reason = _verdict_and_reason(per_skill, verdicts, "no skills in the run")
    ratios = [e["ratio"] for e in per_skill.values() if e["ratio"] is not None]
    out: dict[str, Any] = {
        "holds": holds,
        "claim": CLAIMS["F2"],
        "min_ratio": min(ratios, default=None),
        "per_skill": per_skill,
    }
    if reason is not None:
        out["reason"] = reason
    return out


# ------------------------------------------------------------------------------------------------- F3


def _tokens_by_size(rows: list[EvalRow]) -> dict[str, dict[int | None, int]]:
    """size → seed → training tokens of the model behind the rows (one θ_D per seed for PTM)."""
    out: dict[str, dict[int | None, int]] = defaultdict(dict)
    for row in rows:
        if row.size is not None and row.cost is not None:
            out[row.size].setdefault(row.seed, row.cost.tokens)
    return out


def _f3(results: Results) -> dict[str, Any]:
    per_skill: dict[str, dict[str, dict[str, Any]]] = {}
    verdicts: list[bool | None] = []
    unjudged: list[str] = []
    for skill in sorted(results.skill_scores):
        ptm = _tokens_by_size(_rows(results, skill, family="ptm"))
        rt = _tokens_by_size(_rows(results, skill, family="rt"))
        if not ptm or not rt:
            unjudged.append(f"{skill} (no {'PTM' if not ptm else 'RT'} row with a cost)")
            verdicts.append(None)
            continue
        sizes = {r.size: r.size_value for r in results.test_rows() if r.skill == skill and r.size in ptm}
        entries: dict[str, dict[str, Any]] = {}
        for size in sorted(ptm, key=lambda s: (sizes.get(s) is None, sizes.get(s) or 0.0, s)):
            ptm_tokens = sum(ptm[size].values()) / len(ptm[size])
            entry: dict[str, Any] = {"ptm_tokens": ptm_tokens, "rt_tokens": None, "ratio": None}
            if size not in rt:
                entry.update(holds=None, reason="no RT row at this size")
            else:
                entry["rt_tokens"] = sum(rt[size].values()) / len(rt[size])
                if entry["rt_tokens"] <= 0:
                    entry.update(holds=None, reason="RT used no tokens")
                else:
                    entry["ratio"] = ptm_tokens / entry["rt_tokens"]
                    entry["holds"] = entry["ratio"] <= TOKEN_RATIO + EPS
            if entry["holds"] is None:
                unjudged.append(f"{skill} {size} ({entry['reason']})")
            entries[size] = entry
            verdicts.append(entry["holds"])
        per_skill[skill] = entries
    holds = _every(verdicts) if verdicts else None
    ratios = [e["ratio"] for sizes in per_skill.values() for e in sizes.values() if e["ratio"] is not None]
    out: dict[str, Any] = {
        "holds": holds,
        "claim": CLAIMS["F3"],
        "max_ratio": max(ratios, default=None),
        "per_skill": per_skill,
    }
    if holds is None:
        out["reason"] = "; ".join(unjudged) if unjudged else "no skills in the run"
    return out


# ------------------------------------------------------------------------------------------------- F4


def _f4(results: Results, general: EvalRow, safety_skill: str | None) -> dict[str, Any]:
    if safety_skill is None:
        return _unknown("F4", "no safety skill named")
    if safety_skill not in results.skill_scores:
        return _unknown("F4", f"no {safety_skill!r} skill in the run")
    key = results.skill_scores[safety_skill]
    ptm = best(_rows(results, safety_skill, family="ptm"), key)
    if ptm is None:
        return _unknown("F4", f"no PTM row for {safety_skill}")
    out: dict[str, Any] = {
        "holds": None,
        "claim": CLAIMS["F4"],
        "skill": safety_skill,
        "score": key,
        "ptm_id": ptm.id,
        "theta_G_safety": general.score(key),
        "ptm_safety": ptm.score(key),
        "rise": None,
        "theta_G_exaggerated_refusal": general.score("exaggerated_refusal"),
        "ptm_exaggerated_refusal": ptm.score("exaggerated_refusal"),
        "exaggerated_refusal_change": None,
    }
    if not _finite(out["theta_G_safety"]):
        out["reason"] = f"θ_G has no {key} score"
        return out
    out["rise"] = out["ptm_safety"] - out["theta_G_safety"]
    if not _finite(out["theta_G_exaggerated_refusal"]) or not _finite(out["ptm_exaggerated_refusal"]):
        out["reason"] = "no exaggerated_refusal score for θ_G or the PTM row"
        return out
    out["exaggerated_refusal_change"] = out["ptm_exaggerated_refusal"] - out["theta_G_exaggerated_refusal"]
    out["holds"] = out["rise"] > 0 and abs(out["exaggerated_refusal_change"]) <= OVER_REFUSAL_POINTS + EPS
    return out


# ------------------------------------------------------------------------------------------------- F5


def _f5(results: Results) -> dict[str, Any]:
    skills = sorted(results.skill_scores)
    if len(skills) < 2:
        return _unknown("F5", "fewer than two skills in the run")
    merged = [r for r in results.test_rows() if r.method == "multi_skill" and sorted(r.skills) == skills]
    if not merged:
        return _unknown("F5", "no all-skills merge in the run")
    pairwise = interference_data(results)
    merges: list[dict[str, Any]] = []
    verdicts: list[bool | None] = []
    worst: dict[str, Any] | None = None
    for row in sorted(merged, key=lambda r: (r.merge or "", r.rule or "")):
        per_skill: dict[str, dict[str, Any]] = {}
        for skill in skills:
            key = results.skill_scores[skill]
            single = best([r for r in _rows(results, skill, family="ptm") if r.merge == row.merge], key)
            all_value, single_value = row.score(key), single.score(key) if single else None
            delta = all_value - single_value if _finite(all_value) and _finite(single_value) else None
            entry: dict[str, Any] = {
                "score": key,
                "all_skills": all_value,
                "single": single_value,
                "single_id": single.id if single else None,
                "delta": delta,
                "holds": None if delta is None else delta <= -INTERFERENCE_POINTS + EPS,
                "pairwise": {
                    e["pair"]: {"score": e["in_pair"], "delta": e["delta"]}
                    for e in pairwise
                    if e["merge"] == row.merge and e["rule"] == row.rule and e["skill"] == skill
                },
            }
            per_skill[skill] = entry
            if delta is not None and (worst is None or delta < worst["delta"]):
                worst = {"skill": skill, "merge": row.merge, "rule": row.rule, "delta": delta}
        interference = _some([e["holds"] for e in per_skill.values()])
        verdicts.append(interference)
        merges.append(
            {
                "id": row.id,
                "merge": row.merge,
                "rule": row.rule,
                "interference": interference,
                "skills": per_skill,
            }
        )
    holds = _some(verdicts)
    out: dict[str, Any] = {"holds": holds, "claim": CLAIMS["F5"], "largest_loss": worst, "merges": merges}
    if holds is None:
        out["reason"] = "no skill loses ≥ 1 point and some all-skills or single-skill PTM scores are missing"
    return out


# ------------------------------------------------------------------------------------------------- F6


def _scored(rows: list[EvalRow], key: str) -> list[EvalRow]:
    return [r for r in rows if _finite(r.score(key)) and _finite(r.score("general"))]


def _v(row: EvalRow, key: str) -> float:
    """A score known to be present (rows filtered by :func:`_scored`)."""
    return float(row.scores[key])  # type: ignore[arg-type]


def _f6(results: Results) -> dict[str, Any]:
    per_skill: dict[str, dict[str, dict[str, Any]]] = {}
    verdicts: list[bool | None] = []
    any_other = False
    for skill in sorted(results.skill_scores):
        key = results.skill_scores[skill]
        ta = _scored(_rows(results, skill, method="ptm:task_arithmetic"), key)
        for merge in COMPARED_MERGES:
            other = _scored(_rows(results, skill, method=f"ptm:{merge}"), key)
            if not other:
                continue
            any_other = True
            pairs = [(a, b) for a in ta for b in other if abs(_v(a, key) - _v(b, key)) <= MATCH_POINTS + EPS]
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
                pairs, key=lambda p: (min(_v(p[0], key), _v(p[1], key)), _v(p[0], key) + _v(p[1], key))
            )
            margin = _v(a, "general") - _v(b, "general")
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
    holds = _every(verdicts) if verdicts else None
    margins = [e["general_margin"] for m in per_skill.values() for e in m.values() if "general_margin" in e]
    out: dict[str, Any] = {
        "holds": holds,
        "claim": CLAIMS["F6"],
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
    for a in sorted(ta, key=lambda r: -_v(r, key)):
        target = _v(a, key)
        found: list[tuple[float, EvalRow, EvalRow]] = []
        for curve in curves.values():
            points = sorted(curve, key=lambda r: r.omega or 0.0)
            for lo, hi in pairwise(points):
                s0, s1 = _v(lo, key), _v(hi, key)
                if min(s0, s1) - EPS <= target <= max(s0, s1) + EPS and s0 != s1:
                    t = (target - s0) / (s1 - s0)
                    found.append((_v(lo, "general") + t * (_v(hi, "general") - _v(lo, "general")), lo, hi))
        if not found:
            continue
        general, lo, hi = max(found, key=lambda f: f[0])
        margin = _v(a, "general") - general
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


# ---------------------------------------------------------------------------------------------- table


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return MISSING if value is None else fmt.format(value)


def _summary(key: str, f: dict[str, Any]) -> str:
    """The key numbers of one finding in one line."""
    parts: list[str] = []
    if key == "F1":
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
    elif key == "F2":
        for skill, e in f.get("per_skill", {}).items():
            if e["gain_ptm"] is None:
                parts.append(f"{skill}: n.a. ({e['reason']})")
                continue
            ratio = f"ratio {e['ratio']:.2f}" if e["ratio"] is not None else e["reason"]
            parts.append(f"{skill}: PTM gain {e['gain_ptm']:+.1f} vs RT {e['gain_rt']:+.1f} ({ratio})")
    elif key == "F3":
        for skill, sizes in f.get("per_skill", {}).items():
            for size, e in sizes.items():
                rt = MISSING if e["rt_tokens"] is None else f"{e['rt_tokens']:,.0f}"
                ratio = _num(e["ratio"], "{:.3f}") if e["ratio"] is not None else e["reason"]
                parts.append(f"{skill} {size}: {e['ptm_tokens']:,.0f} / {rt} tokens ({ratio})")
    elif key == "F4" and "ptm_id" in f:
        parts.append(
            f"{f['skill']}: {f['score']} {_num(f['theta_G_safety'])} → {_num(f['ptm_safety'])} "
            f"({_num(f['rise'], '{:+.1f}')}); exaggerated refusal {_num(f['theta_G_exaggerated_refusal'])} → "
            f"{_num(f['ptm_exaggerated_refusal'])} ({_num(f['exaggerated_refusal_change'], '{:+.1f}')})"
        )
    elif key == "F5":
        for m in f.get("merges", []):
            skills = ", ".join(
                f"{skill} {_num(e['all_skills'])} vs {_num(e['single'])} alone "
                f"({_num(e['delta'], '{:+.1f}')})"
                for skill, e in m["skills"].items()
            )
            parts.append(f"{m['merge']} ({m['rule']}): {skills}")
    elif key == "F6":
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
    if f["holds"] is None:
        parts.insert(0, f"n.a.: {f.get('reason', 'missing rows')}")
    return "; ".join(parts)


def findings_report_table(f: dict[str, dict[str, Any]]) -> Table:
    """The findings as a report :class:`~skillmerge.report.tables.Table` (markdown and HTML)."""
    rows = [
        [
            key,
            entry["claim"],
            {True: "yes", False: "no", None: "n.a."}[entry["holds"]],
            _summary(key, entry).replace("|", "/"),
        ]
        for key, entry in f.items()
    ]
    notes = [
        "Test-split scores (0-100); θ_G = the general model; best = highest skill score (as in the tables)."
    ]
    return Table("Findings", ["Finding", "Claim", "Holds", "Key numbers"], rows, notes)


def findings_table(f: dict[str, dict[str, Any]]) -> str:
    """The findings as a markdown table: finding, claim, holds (yes / no / n.a.), key numbers in one line."""
    return findings_report_table(f).markdown()


__all__ = ["CLAIMS", "findings", "findings_report_table", "findings_table"]
