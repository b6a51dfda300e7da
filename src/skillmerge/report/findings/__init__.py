"""The findings of the Merge-to-Learn demo, judged on a collected run (test-split rows only).

Each finding is ``{"holds": True | False | None, "claim": str, ...numbers...}``; ``holds`` is ``None`` (with a
``"reason"``) when the run lacks the rows it needs. Scores are on 0-100; θ_G is the ``general`` row; a skill
is measured by its own score (``Results.skill_scores``); "best" is :func:`skillmerge.report.tables.best`
(highest skill score, ties: higher general, then fewer FLOPs).

Each finding is one module (``f1_forgetting`` … ``f6_merge_methods``: its claim, thresholds, judge and
table summary) registered with :func:`~skillmerge.report.findings.registry.register_finding`; the rules
themselves are in each module's docstring. Shared pieces (three-valued verdicts, row selection) are in
:mod:`skillmerge.report.findings.rules`.

"For every skill" verdicts combine three-valued: any failing skill → False; else any skill that cannot be
judged → None; else True. F5's "some skill loses" is the dual: any loss → True; else any unknown → None.
"""

from __future__ import annotations

from typing import Any

from skillmerge.report.bootstrap import REPLICATES, with_intervals
from skillmerge.report.findings import (  # noqa: F401  (imported to register, in this order)
    f1_forgetting,
    f2_skill_gain,
    f3_cost,
    f4_safety,
    f5_interference,
    f6_merge_methods,
)
from skillmerge.report.findings.registry import (
    CLAIMS,
    FINDINGS,
    Finding,
    RunView,
    register_finding,
    unknown,
    unregister_finding,
)
from skillmerge.report.results import Results
from skillmerge.report.tables import Table


def findings(
    results: Results,
    *,
    safety_skill: str | None = "safety",
    replicates: int = REPLICATES,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Every registered finding (keys ``F1`` … ``F6``, then any added) judged on ``results``, each with a
    95% paired-bootstrap interval for every number (``ci``) and the share of ``replicates`` resampled runs
    in which it holds (``holds_share``; :mod:`skillmerge.report.bootstrap`). ``holds`` is the verdict on
    the measured scores; ``replicates=0`` skips the intervals."""

    def judge_all(run: Results) -> dict[str, dict[str, Any]]:
        return judged(run, safety_skill=safety_skill)

    return with_intervals(results, judge_all(results), judge_all, replicates=replicates, seed=seed)


def judged(results: Results, *, safety_skill: str | None = "safety") -> dict[str, dict[str, Any]]:
    """Every registered finding judged on ``results`` (point estimates only)."""
    general = results.general()
    if general is None:
        return {key: unknown(key, "no θ_G (general) test evaluation in the run") for key in FINDINGS}
    view = RunView(results, general, safety_skill)
    return {key: finding.judge(view) for key, finding in FINDINGS.items()}


def _summary(key: str, f: dict[str, Any]) -> str:
    """The key numbers of one finding in one line."""
    finding = FINDINGS.get(key)
    parts = finding.summary(f) if finding is not None else []
    if f["holds"] is None:
        parts.insert(0, f"n.a.: {f.get('reason', 'missing rows')}")
    return "; ".join(parts)


def interval_text(f: dict[str, Any]) -> str:
    """The 95% intervals of a finding's top-level numbers and its share of resamples that hold, one line."""
    ci = f.get("ci")
    if not ci:
        return f"— ({f['ci_reason']})" if f.get("ci_reason") else "—"
    parts = [f"{path} [{low:.3g}, {high:.3g}]" for path, (low, high) in ci.items() if "." not in path]
    if f.get("holds_share") is not None:
        parts.append(f"holds in {100 * f['holds_share']:.0f}% of resamples")
    return "; ".join(parts)


def findings_report_table(f: dict[str, dict[str, Any]]) -> Table:
    """The findings as a report :class:`~skillmerge.report.tables.Table` (markdown and HTML)."""
    rows = [
        [
            key,
            entry["claim"],
            {True: "yes", False: "no", None: "n.a."}[entry["holds"]],
            _summary(key, entry).replace("|", "/"),
            interval_text(entry).replace("|", "/"),
        ]
        for key, entry in f.items()
    ]
    notes = [
        "Test-split scores (0-100); θ_G = the general model; best = highest skill score (as in the tables).",
        "Holds: the verdict on the measured scores. 95% interval: paired bootstrap over test items (every"
        " model redrawn on the same items), the finding judged again on each resample.",
    ]
    columns = ["Finding", "Claim", "Holds", "Key numbers", "95% interval"]
    return Table("Findings", columns, rows, notes)


def findings_table(f: dict[str, dict[str, Any]]) -> str:
    """The findings as a markdown table: finding, claim, holds (yes / no / n.a.), key numbers in one line."""
    return findings_report_table(f).markdown()


__all__ = [
    "CLAIMS",
    "FINDINGS",
    "Finding",
    "RunView",
    "findings",
    "findings_report_table",
    "findings_table",
    "interval_text",
    "judged",
    "register_finding",
    "unregister_finding",
]
