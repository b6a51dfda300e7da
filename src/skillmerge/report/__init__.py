"""The report stage: a (finished or partial) run directory → report.html + report.md + results.json.

It reads results only (the step manifests the runner wrote) and never imports another stage. The top line
states the PTM/RT and PTM/CFT training-FLOPs ratios; then one table per skill (θ_G vs the best CFT, RT and
PTM), the all-skills merge and pairwise interference tables, the failed steps, and three plots (trade-off
with the Pareto front, cost on a log axis, score vs data size), saved as PNG and embedded in the HTML.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from skillmerge.atomic import atomic_dir
from skillmerge.report.findings import findings, findings_report_table
from skillmerge.report.results import Results, collect
from skillmerge.report.tables import (
    BEST_RULE,
    all_tables,
    cost_line,
    cost_ratios,
    interference_data,
    pareto_fronts,
    skill_table_data,
    training_totals,
)

REPORT_DIR = "report"
STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
    ".note{font-size:90%;color:#555;margin:0.2em 0}img{max-width:100%}"
)


def summary(results: Results, found: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything ``results.json`` holds: the collected results plus the tables' data and the rules used
    (``found``: the findings when already judged, with their intervals)."""
    return {
        "results": results.to_dict(),
        "cost_line": cost_line(results),
        "cost_ratios": cost_ratios(results),
        "training_totals": training_totals(results),
        "skill_tables": {skill: skill_table_data(results, skill) for skill in sorted(results.skill_scores)},
        "interference": interference_data(results),
        "pareto": pareto_fronts(results),
        "best_rule": BEST_RULE,
        "findings": findings(results) if found is None else found,
    }


def load_results(path: str | Path) -> Results:
    """The :class:`Results` saved in a ``results.json``."""
    return Results.from_dict(json.loads(Path(path).read_text(encoding="utf-8"))["results"])


def run(
    run_dir: str | Path, *, out: str | Path | None = None, skill_scores: dict[str, str] | None = None
) -> Path:
    """Write the report of ``run_dir`` into ``out`` (default ``RUN_DIR/report``), replacing it atomically.

    Returns the report directory. ``skill_scores`` names each skill's score when the run does not say.
    """
    run_dir = Path(run_dir)
    results = collect(run_dir, skill_scores)
    target = Path(out) if out is not None else run_dir / REPORT_DIR
    from skillmerge.report.plots import all_plots  # matplotlib: only when a report is written

    found = findings(results)
    tables = [*all_tables(results), findings_report_table(found)]
    plots = all_plots(results)
    name = str(results.run.get("spec", run_dir.name))
    top = cost_line(results)

    markdown = [f"# skillmerge report: {name}", "", f"**{top}**", ""]
    markdown += [table.markdown() for table in tables]
    markdown += ["## Plots", ""] + [f"![{file}]({file})" for file in plots]

    body = [f"<h1>skillmerge report: {html.escape(name)}</h1>", f"<p><b>{html.escape(top)}</b></p>"]
    body += [table.html() for table in tables]
    body += ["<h2>Plots</h2>"] + [
        f"<img alt='{file}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        for file, png in plots.items()
    ]
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title>"
    page += f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"

    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "report.md").write_text("\n".join(markdown) + "\n", encoding="utf-8")
        (tmp / "report.html").write_text(page, encoding="utf-8")
        (tmp / "results.json").write_text(
            json.dumps(summary(results, found), indent=2) + "\n", encoding="utf-8"
        )
        for file, png in plots.items():
            (tmp / file).write_bytes(png)
    return target


__all__ = ["collect", "load_results", "run", "summary"]
