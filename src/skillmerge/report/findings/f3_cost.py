"""F3 per skill and data size: θ_D's training tokens (a PTM row's cost; merging adds none) ÷ RT's training
tokens ≤ 0.05; each side is the mean over the seeds evaluated at that size.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from skillmerge.report.findings.registry import Finding, RunView, register_finding
from skillmerge.report.findings.rules import EPS, every, num, skill_rows
from skillmerge.report.results import EvalRow, Results
from skillmerge.report.tables import MISSING

KEY = "F3"
CLAIM = "PTM's training tokens ≤ 5% of RT's"
TOKEN_RATIO = 0.05


def judge(view: RunView) -> dict[str, Any]:
    return _f3(view.results)


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
        ptm = _tokens_by_size(skill_rows(results, skill, family="ptm"))
        rt = _tokens_by_size(skill_rows(results, skill, family="rt"))
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
    holds = every(verdicts) if verdicts else None
    ratios = [e["ratio"] for sizes in per_skill.values() for e in sizes.values() if e["ratio"] is not None]
    out: dict[str, Any] = {
        "holds": holds,
        "claim": CLAIM,
        "max_ratio": max(ratios, default=None),
        "per_skill": per_skill,
    }
    if holds is None:
        out["reason"] = "; ".join(unjudged) if unjudged else "no skills in the run"
    return out


def summary(f: dict[str, Any]) -> list[str]:
    """The key numbers of F3, one phrase each."""
    parts: list[str] = []
    for skill, sizes in f.get("per_skill", {}).items():
        for size, e in sizes.items():
            rt = MISSING if e["rt_tokens"] is None else f"{e['rt_tokens']:,.0f}"
            ratio = num(e["ratio"], "{:.3f}") if e["ratio"] is not None else e["reason"]
            parts.append(f"{skill} {size}: {e['ptm_tokens']:,.0f} / {rt} tokens ({ratio})")
    return parts


NAME = "ptm_costs_a_fraction_of_rt"
FINDING = register_finding(Finding(KEY, NAME, CLAIM, judge, summary))
