"""docs/results/paper-on-cpu.md and its plots from a finished ``skillmerge demo --full`` run.

    skillmerge demo --full --out runs/paper-on-cpu --results docs/results/paper-on-cpu.json
    python examples/paper_on_cpu_results.py runs/paper-on-cpu [--json docs/results/paper-on-cpu.json]

Writes the generated part of ``docs/results/paper-on-cpu.md`` — the paper's tables side by side with ours,
every model's scores per skill and size, the findings with their 95% intervals (read from the ``--json``
record the demo wrote, so the document and the JSON agree), the all-skills, pairwise and task-vector overlap
tables of the report — between the markers ``<!-- generated -->`` and ``<!-- end generated -->``; text
outside the markers (the discussion) is kept. The report's PNGs are copied as ``paper-on-cpu-<name>.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from skillmerge.report import run as write_report
from skillmerge.report.findings import FINDINGS, interval_text
from skillmerge.report.results import Cost, EvalRow, Results, collect
from skillmerge.report.tables import all_skills_table, best, interference_table, overlap_table

BEGIN, END = "<!-- generated -->", "<!-- end generated -->"
# Morrison et al. (2024), Llama-2-7B with Tulu-2 as θ_G: the numbers the issue names.
PAPER = {
    "baseline_general": 49.9,
    "science": {"CFT": (33.7, 40.6), "RT": (50.6, 37.8), "PTM": (47.1, 38.2)},
    "all_skills": {"PTM": (84.0, 93.2), "RT": (95.0, 37.2), "CFT": (99.8, 16.0)},
}
FAMILIES = {"rt": "RT", "cft": "CFT", "cft_replay": "CFT+replay"}


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "—" if value is None else fmt.format(value)


def _rows(results: Results, skill: str, method: str) -> list[EvalRow]:
    # Single-skill rows (a multi-skill merge's row names several skills).
    return [r for r in results.test_rows() if r.skill == skill and r.method == method and len(r.skills) <= 1]


def _sizes(results: Results, skill: str) -> list[str]:
    rows = [r for r in results.test_rows() if r.skill == skill and r.size]
    return [s for s, _ in sorted({(r.size, r.size_value or 0.0) for r in rows}, key=lambda p: p[1])]


def _cost(results: Results, recipe: str, skill: str | None, size: str | None) -> Cost | None:
    for row in results.training:
        if row.recipe == recipe and row.skill == skill and (size is None or row.size == size):
            return row.cost
    return None


def _steps(cost: Cost | None) -> str:
    return "—" if cost is None else f"{cost.optimizer_steps:,} / {cost.tokens:,}"


def setup_section(results: Results, record: dict[str, Any]) -> list[str]:
    general = _cost(results, "general", None, None)
    invocations = record.get("invocations") or [
        {"wall_seconds": record["wall_seconds"], "steps_ran": record["steps"]["ran"]}
    ]
    ran = sum(i["steps_ran"] for i in invocations)
    spread = "" if len(invocations) == 1 else f" over {len(invocations)} invocations"
    lines = [
        f"Wall time **{record['wall_seconds']:,.0f} s** ({record['wall_seconds'] / 60:.0f} min) for "
        f"{ran} steps (of {record['steps']['total']}){spread}; the steps' own times sum to "
        f"{record.get('step_seconds', record['wall_seconds']):,.0f} s. The machine's fp32 matmul probe read "
        f"**{record['machine_gflops']:.0f} GFLOP/s** ({record['machine']['threads']} threads).",
        "",
        "| skill | size | θ_D steps / tokens (PTM's cost) | RT steps / tokens | θ_D / RT tokens |",
        "|---|---|---:|---:|---:|",
    ]
    for skill in sorted(results.skill_scores):
        for size in _sizes(results, skill):
            ptm, rt = _cost(results, "skill", skill, size), _cost(results, "rt", skill, size)
            ratio = _num(ptm.tokens / rt.tokens if ptm and rt else None, "{:.3f}")
            lines.append(f"| {skill} | {size} | {_steps(ptm)} | {_steps(rt)} | {ratio} |")
    lines += [
        "",
        f"θ_G's training (shared by every method but RT): {_steps(general)} steps / tokens. The paper: "
        "PTM's science model 479 steps against RT's 11,766 (4%).",
        "",
    ]
    return lines


def paper_section(results: Results) -> list[str]:
    """The paper's headline numbers beside ours (each skill's largest size; "best" = highest skill score)."""
    theta_g = results.general()
    ours_g = [_num(theta_g.score(k) if theta_g else None) for k in ("general", "science")]
    lines = [
        "| model | paper general | paper science | ours general | ours science |",
        "|---|---:|---:|---:|---:|",
        f"| baseline θ_G | {PAPER['baseline_general']} | — | {ours_g[0]} | {ours_g[1]} |",
    ]
    if "science" in results.skill_scores:
        size = _sizes(results, "science")[-1]
        for label, method in (("CFT", "cft"), ("RT", "rt"), ("PTM", "ptm:task_arithmetic")):
            row = best([r for r in _rows(results, "science", method) if r.size == size], "science")
            general, science = PAPER["science"][label]
            ours = (row.score("general"), row.score("science")) if row else (None, None)
            what = f" (ω {row.omega:g})" if row is not None and row.omega is not None else ""
            lines.append(f"| {label}{what} | {general} | {science} | {_num(ours[0])} | {_num(ours[1])} |")
    lines += [
        "",
        "| model | paper safety | paper exaggerated-refusal compliance | ours safety | ours look-alike "
        "compliance |",
        "|---|---:|---:|---:|---:|",
    ]
    merged = [r for r in results.test_rows() if r.method == "multi_skill" and r.merge == "task_arithmetic"]
    size = _sizes(results, "safety")[-1] if "safety" in results.skill_scores else None
    for label in ("PTM", "RT", "CFT"):
        if label == "PTM":
            row = next((r for r in merged if r.rule == "validation"), merged[0] if merged else None)
            what = f" all-skills merge, task arithmetic, ω by {row.rule}" if row else ""
        else:
            row = best([r for r in _rows(results, "safety", label.lower()) if r.size == size], "safety")
            what = f" (safety alone, {size})"
        paper_safety, paper_compliance = PAPER["all_skills"][label]
        ours = (row.score("safety"), row.score("exaggerated_refusal")) if row else (None, None)
        lines.append(
            f"| {label}{what} | {paper_safety} | {paper_compliance} | {_num(ours[0])} | {_num(ours[1])} |"
        )
    return [*lines, ""]


def scores_section(results: Results) -> list[str]:
    """Every model per skill: general and skill score (and look-alike compliance for safety) at each size."""
    lines: list[str] = []
    theta_g = results.general()
    for skill in sorted(results.skill_scores):
        score = results.skill_scores[skill]
        sizes = _sizes(results, skill)
        keys = [("general", "general"), (score, skill)]
        if skill == "safety":
            keys.append(("exaggerated_refusal", "compliance"))
        header = ["model"] + [f"{size} {name}" for size in sizes for _, name in keys]
        lines += [
            f"### {skill}",
            "",
            "| " + " | ".join(header) + " |",
            "|---" + "|---:" * (len(header) - 1) + "|",
        ]
        if theta_g is not None:
            lines.append(
                "| θ_G | " + " | ".join(_num(theta_g.score(k)) for _ in sizes for k, _ in keys) + " |"
            )
        methods = [m for m in ("rt", "cft", "cft_replay") if _rows(results, skill, m)]
        merges = sorted({r.method for r in results.test_rows() if r.skill == skill and r.family == "ptm"})
        for method in methods:
            by_size = {r.size: r for r in _rows(results, skill, method)}
            cells = [_num(by_size[s].score(k)) if s in by_size else "—" for s in sizes for k, _ in keys]
            lines.append(f"| {FAMILIES[method]} | " + " | ".join(cells) + " |")
        for method in merges:
            omegas = sorted({r.omega for r in _rows(results, skill, method) if r.omega is not None})
            for omega in omegas:
                by_size = {r.size: r for r in _rows(results, skill, method) if r.omega == omega}
                cells = [_num(by_size[s].score(k)) if s in by_size else "—" for s in sizes for k, _ in keys]
                name = "WiSE-FT" if method == "ptm:wise_ft" else "PTM " + method.split(":", 1)[1]
                lines.append(f"| {name} ω {omega:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def findings_section(record: dict[str, Any]) -> list[str]:
    lines = [
        "| finding | holds | claim | numbers | 95% intervals (paired bootstrap over test items) |",
        "|---|---|---|---|---|",
    ]
    for key, f in record["findings"].items():
        holds = {True: "**yes**", False: "**no**", None: "n.a."}[f.get("holds")]
        finding = FINDINGS.get(key)
        numbers = "; ".join(finding.summary(f)) if finding is not None else ""
        lines.append(f"| {key} | {holds} | {f.get('claim', '')} | {numbers} | {interval_text(f)} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="runs/paper-on-cpu", type=Path)
    parser.add_argument("--json", default=Path("docs/results/paper-on-cpu.json"), type=Path)
    parser.add_argument("--out", default=Path("docs/results"), type=Path)
    args = parser.parse_args(argv)
    run_dir = args.run / "run"
    record = json.loads(args.json.read_text(encoding="utf-8"))
    results = collect(run_dir)
    report = write_report(run_dir)
    parts = [
        BEGIN,
        "",
        "## Setup as run",
        "",
        *setup_section(results, record),
        "## The paper's numbers beside ours",
        "",
        *paper_section(results),
        "## Findings",
        "",
        *findings_section(record),
        "## Every model (test split: 256 general items, 64 per skill suite)",
        "",
        *scores_section(results),
        "## Several skills in one model",
        "",
        all_skills_table(results).markdown(),
        interference_table(results).markdown(),
        overlap_table(results).markdown(),
        "## Plots",
        "",
    ]
    for png in sorted(report.glob("*.png")):
        target = args.out / f"paper-on-cpu-{png.name}"
        shutil.copyfile(png, target)
        parts.append(f"![{png.stem}]({target.name})")
    parts += ["", END]
    document = args.out / "paper-on-cpu.md"
    old = (
        document.read_text(encoding="utf-8")
        if document.exists()
        else f"# The paper on CPU\n\n{BEGIN}\n{END}\n"
    )
    head, _, rest = old.partition(BEGIN)
    _, _, tail = rest.partition(END)
    document.write_text(head + "\n".join(parts) + tail, encoding="utf-8")
    print(f"wrote {document} and {len(list(report.glob('*.png')))} plots")


if __name__ == "__main__":
    main()
