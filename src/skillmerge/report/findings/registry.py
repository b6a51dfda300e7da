"""The findings registry: each finding is one named unit (claim, thresholds, judge, summary), one module each.

A finding module builds a :class:`Finding` and passes it to :func:`register_finding`; the report judges
every registered finding in registration order (F1 … F6 first, as the built-ins are imported in that
order). Adding a finding is one new module (see ``docs/arms.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skillmerge.report.results import EvalRow, Results


@dataclass(frozen=True)
class RunView:
    """What a judge sees: the collected results, θ_G's test row, and which skill is the safety skill."""

    results: Results
    general: EvalRow
    safety_skill: str | None


@dataclass(frozen=True)
class Finding:
    """One claim of the paper, judged on a run: ``key`` is its label in the report (F1 …), ``name`` says
    what it claims (``cft_forgets_ptm_keeps``).

    ``judge`` returns ``{"holds": True | False | None, "claim": ..., ...numbers...}`` (``holds`` None with a
    ``"reason"`` when the run lacks the rows it needs); ``summary`` turns that dict into the key numbers of
    the findings table, one phrase each (the table adds the ``n.a.: reason`` prefix itself).
    """

    key: str
    name: str
    claim: str
    judge: Callable[[RunView], dict[str, Any]]
    summary: Callable[[dict[str, Any]], list[str]]


FINDINGS: dict[str, Finding] = {}
CLAIMS: dict[str, str] = {}  # key → claim, in registration order (kept in step with FINDINGS)


def register_finding(finding: Finding) -> Finding:
    """Add ``finding`` to the report; a key taken by another finding is a programming error."""
    if finding.key in FINDINGS and FINDINGS[finding.key] is not finding:
        raise ValueError(f"finding {finding.key!r} is registered twice")
    FINDINGS[finding.key] = finding
    CLAIMS[finding.key] = finding.claim
    return finding


def unregister_finding(key: str) -> None:
    """Remove a finding (tests and plugins that register a finding for one report)."""
    FINDINGS.pop(key, None)
    CLAIMS.pop(key, None)


def unknown(key: str, reason: str) -> dict[str, Any]:
    """The verdict of a finding that cannot be judged on this run."""
    return {"holds": None, "claim": CLAIMS[key], "reason": reason}
