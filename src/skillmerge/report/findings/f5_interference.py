"""F5 for each (merge method, ω rule) of an all-skills merge: a skill's score in it vs its best single-skill
PTM score with the same merge method; holds when some skill loses ≥ 1 point (the pairwise merges of the
same method and rule are reported beside it, from :func:`~skillmerge.report.tables.interference_data`).
"""

from __future__ import annotations

from typing import Any

from skillmerge.report.findings.registry import Finding, RunView, register_finding, unknown
from skillmerge.report.findings.rules import EPS, finite, num, skill_rows, some
from skillmerge.report.results import Results
from skillmerge.report.tables import best, interference_data

KEY = "F5"
CLAIM = "in the all-skills merge at least one skill loses to interference, visible in the pairwise table"
INTERFERENCE_POINTS = 1.0


def judge(view: RunView) -> dict[str, Any]:
    return _f5(view.results)


def _f5(results: Results) -> dict[str, Any]:
    skills = sorted(results.skill_scores)
    if len(skills) < 2:
        return unknown(KEY, "fewer than two skills in the run")
    merged = [r for r in results.test_rows() if r.method == "multi_skill" and sorted(r.skills) == skills]
    if not merged:
        return unknown(KEY, "no all-skills merge in the run")
    pairwise = interference_data(results)
    merges: list[dict[str, Any]] = []
    verdicts: list[bool | None] = []
    worst: dict[str, Any] | None = None
    for row in sorted(merged, key=lambda r: (r.merge or "", r.rule or "")):
        per_skill: dict[str, dict[str, Any]] = {}
        for skill in skills:
            key = results.skill_scores[skill]
            single = best([r for r in skill_rows(results, skill, family="ptm") if r.merge == row.merge], key)
            all_value, single_value = row.score(key), single.score(key) if single else None
            delta = all_value - single_value if finite(all_value) and finite(single_value) else None
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
        interference = some([e["holds"] for e in per_skill.values()])
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
    holds = some(verdicts)
    out: dict[str, Any] = {"holds": holds, "claim": CLAIM, "largest_loss": worst, "merges": merges}
    if holds is None:
        out["reason"] = "no skill loses ≥ 1 point and some all-skills or single-skill PTM scores are missing"
    return out


def summary(f: dict[str, Any]) -> list[str]:
    """The key numbers of F5, one phrase each."""
    parts: list[str] = []
    for m in f.get("merges", []):
        skills = ", ".join(
            f"{skill} {num(e['all_skills'])} vs {num(e['single'])} alone ({num(e['delta'], '{:+.1f}')})"
            for skill, e in m["skills"].items()
        )
        parts.append(f"{m['merge']} ({m['rule']}): {skills}")
    return parts


NAME = "skills_interfere"
FINDING = register_finding(Finding(KEY, NAME, CLAIM, judge, summary))
