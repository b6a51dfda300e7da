"""The paper's tables from collected results, as data (for tests and results.json) and as markdown / HTML.

Rules (stated in the report too):

- **best** of a method for a skill: among its test evaluations of that skill (every size, seed, ω and merge
  method), the highest skill score; ties go to the higher general score, then to the lower training FLOPs.
  This is an oracle pick on test scores, as in the paper's "best" rows.
- **% change vs θ_G**: ``100·(x − x_G) / x_G`` per score (undefined when θ_G's score is 0 or missing).
- **cost ratio**: ``Σ FLOPs(θ_D) / Σ FLOPs(RT)`` and ``/ Σ FLOPs(CFT)`` over every training run of the
  run (all skills, sizes, seeds); θ_G is shared by all arms and excluded; merging adds no training FLOPs.
- **Pareto front** (per skill): evaluations (θ_G and every single-skill model) that no other point beats on
  both general and skill score (≥ on both, > on one).
- **interference**: each skill's score in a pair merge minus its score in the best single-skill PTM merge of
  the same merge method.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

from skillmerge.report.results import EvalRow, Failure, Results

MISSING = "—"
FAMILY_LABELS = {"cft": "best CFT", "cft_replay": "best CFT+replay", "rt": "best RT", "ptm": "best PTM"}


@dataclass
class Table:
    """A rendered table: header, rows of display strings and footnotes."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines += ["", *(f"{note}  " for note in self.notes)]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in self.rows
        )
        notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in self.notes)
        return f"<h3>{html.escape(self.title)}</h3><table><tr>{head}</tr>{body}</table>{notes}"


# ------------------------------------------------------------------------------------------------ picks


def best(rows: list[EvalRow], score: str) -> EvalRow | None:
    """The highest ``score``; ties: higher general, then lower FLOPs (module docstring)."""
    scored = [r for r in rows if _finite(r.score(score))]
    if not scored:
        return None

    def rank(row: EvalRow) -> tuple[float, float, float]:
        general = row.score("general")
        flops = row.cost.flops if row.cost else math.inf
        return (row.score(score) or 0.0, general if _finite(general) else -math.inf, -flops)

    return max(scored, key=rank)


def pct_change(value: float | None, baseline: float | None) -> float | None:
    """``100·(value − baseline) / baseline``; ``None`` when either is missing or the baseline is 0."""
    if not _finite(value) or not _finite(baseline) or baseline == 0:
        return None
    return 100.0 * (value - baseline) / baseline  # type: ignore[operator]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _single_skill(results: Results, skill: str, family: str | None = None) -> list[EvalRow]:
    return [
        r
        for r in results.test_rows()
        if r.skill == skill and r.method != "multi_skill" and (family is None or r.family == family)
    ]


def _blame(failures: list[Failure], skill: str | None, family: str) -> list[str]:
    """Failed steps that explain a missing (skill, family) result."""
    return [f.id for f in failures if f.family == family and (skill is None or f.skill in (skill, None))]


# ------------------------------------------------------------------------------------------ skill table


def skill_table_data(results: Results, skill: str) -> list[dict[str, Any]]:
    """θ_G and the best of each method for ``skill``: scores, % change vs θ_G, cost; or why it is missing."""
    score = results.skill_scores[skill]
    general = results.general()
    columns = {
        "general": "general",
        "skill": score,
        "safety": "safety",
        "exaggerated_refusal": "exaggerated_refusal",
    }
    # A method appears when it has results or failed for this skill (then its row says which step failed);
    # an arm the report has no label for (a user's own) is listed after the built-in ones as "best NAME".
    others = sorted({r.family for r in _single_skill(results, skill)} - set(FAMILY_LABELS) - {"general"})
    families = [
        f
        for f in [*FAMILY_LABELS, *others]
        if _single_skill(results, skill, f) or _blame(results.failures, skill, f)
    ]
    entries: list[tuple[str, EvalRow | None, str]] = [("θ_G", general, "general")]
    entries += [
        (FAMILY_LABELS.get(f, f"best {f}"), best(_single_skill(results, skill, f), score), f)
        for f in families
    ]
    table = []
    for label, row, family in entries:
        entry: dict[str, Any] = {"label": label, "family": family, "id": row.id if row else None}
        if row is None:
            entry["missing_because"] = _blame(
                results.failures, skill if family != "general" else None, family
            )
            table.append(entry)
            continue
        entry.update(method=row.method, size=row.size, omega=row.omega, seed=row.seed)
        for key, name in columns.items():
            entry[key] = row.score(name)
            entry[f"{key}_pct"] = pct_change(row.score(name), general.score(name) if general else None)
        entry["cost"] = (
            None
            if row.cost is None
            else {
                "optimizer_steps": row.cost.optimizer_steps,
                "tokens": row.cost.tokens,
                "flops": row.cost.flops,
                "wall_seconds": row.cost.wall_seconds,
            }
        )
        table.append(entry)
    return table


def skill_table(results: Results, skill: str) -> Table:
    score = results.skill_scores[skill]
    columns = ["Model", "Size", "ω", "General", f"Skill ({score})", "Safety", "Exaggerated refusal"]
    columns += ["Steps", "Tokens", "FLOPs", "Wall time"]
    rows, notes = [], []
    for entry in skill_table_data(results, skill):
        if entry["id"] is None:
            mark = _footnote(notes, entry["missing_because"], entry["label"])
            rows.append([entry["label"] + mark] + [MISSING] * (len(columns) - 1))
            continue
        cells = [entry["label"], entry["size"] or MISSING, _num(entry["omega"], "{:g}")]
        for key in ("general", "skill", "safety", "exaggerated_refusal"):
            cells.append(_score_cell(entry[key], entry[f"{key}_pct"], entry["family"] == "general"))
        cost = entry["cost"]
        if cost is None or entry["family"] == "general":
            cells += [MISSING] * 4 if entry["family"] != "general" else ["(shared)"] * 4
        else:
            cells += [
                str(cost["optimizer_steps"]),
                f"{cost['tokens']:,}",
                f"{cost['flops']:.3g}",
                f"{cost['wall_seconds']:.1f} s",
            ]
        rows.append(cells)
    notes.append("Scores 0-100, higher is better; (±x%) is the change vs θ_G. " + BEST_RULE)
    return Table(f"Skill {skill}", columns, rows, notes)


BEST_RULE = (
    "Best = highest skill score over sizes, seeds, ω and merge methods (ties: higher general, then fewer "
    "FLOPs). Cost = training of that model (PTM: θ_D training + merge time); θ_G's training is shared."
)


def _score_cell(value: float | None, pct: float | None, baseline: bool) -> str:
    if value is None:
        return MISSING
    if baseline or pct is None:
        return f"{value:.1f}"
    return f"{value:.1f} ({pct:+.1f}%)"


def _num(value: float | None, fmt: str) -> str:
    return MISSING if value is None else fmt.format(value)


def _footnote(notes: list[str], step_ids: list[str], label: str) -> str:
    mark = "*" * (len([n for n in notes if n.startswith("*")]) + 1)
    why = ", ".join(step_ids) if step_ids else "no result in the run (step not run yet)"
    notes.append(f"{mark} {label}: missing — failed/blocked by {why}")
    return mark


# ------------------------------------------------------------------------------------------ cost ratio


def training_totals(results: Results) -> dict[str, dict[str, float]]:
    """Σ cost per training recipe (``skill`` is PTM's θ_D): optimizer steps, tokens, FLOPs, wall seconds."""
    totals: dict[str, dict[str, float]] = {}
    for row in results.training:
        total = totals.setdefault(
            row.recipe, {"optimizer_steps": 0, "tokens": 0, "flops": 0.0, "wall_seconds": 0.0}
        )
        total["optimizer_steps"] += row.cost.optimizer_steps
        total["tokens"] += row.cost.tokens
        total["flops"] += row.cost.flops
        total["wall_seconds"] += row.cost.wall_seconds
    return totals


def cost_ratios(results: Results) -> dict[str, float | None]:
    """``ptm_over_rt = Σ FLOPs(θ_D) / Σ FLOPs(RT)``, ``ptm_over_cft = Σ FLOPs(θ_D) / Σ FLOPs(CFT)``."""
    totals = training_totals(results)
    ptm = totals.get("skill", {}).get("flops")

    def ratio(other: str) -> float | None:
        denominator = totals.get(other, {}).get("flops")
        return ptm / denominator if ptm is not None and denominator else None

    return {"ptm_over_rt": ratio("rt"), "ptm_over_cft": ratio("cft")}


def cost_line(results: Results) -> str:
    ratios = cost_ratios(results)
    rt = ratios["ptm_over_rt"]
    cft = ratios["ptm_over_cft"]
    parts = [
        f"{rt:.2f}× RT" if rt is not None else f"{MISSING}× RT",
        f"{cft:.2f}× CFT" if cft is not None else f"{MISSING}× CFT",
    ]
    return (
        f"PTM costs {parts[0]} and {parts[1]} in training FLOPs "
        "(Σ FLOPs of every θ_D ÷ Σ FLOPs of every RT / CFT run; θ_G shared and excluded; merges add none)."
    )


# ---------------------------------------------------------------------------------------------- pareto


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Ids of the ``(id, general, skill)`` points no other point dominates, by ascending general score."""
    front = [
        p
        for p in points
        if not any(q[1] >= p[1] and q[2] >= p[2] and (q[1] > p[1] or q[2] > p[2]) for q in points)
    ]
    return [p[0] for p in sorted(front, key=lambda p: (p[1], p[2]))]


def skill_points(results: Results, skill: str) -> list[tuple[str, float, float]]:
    """``(id, general, skill score)`` of θ_G and every single-skill test evaluation of ``skill``."""
    score = results.skill_scores[skill]
    rows = _single_skill(results, skill)
    general = results.general()
    if general is not None:
        rows = [general, *rows]
    return [
        (r.id, r.score("general"), r.score(score))  # type: ignore[misc]
        for r in rows
        if _finite(r.score("general")) and _finite(r.score(score))
    ]


def pareto_fronts(results: Results) -> dict[str, list[str]]:
    return {skill: pareto_front(skill_points(results, skill)) for skill in results.skill_scores}


# -------------------------------------------------------------------------------------- multi-skill tables


def _multi_rows(results: Results, size: int | None = None) -> list[EvalRow]:
    rows = [r for r in results.test_rows() if r.method == "multi_skill"]
    return [r for r in rows if size is None or len(r.skills) == size]


def interference_data(results: Results) -> list[dict[str, Any]]:
    """Per pair merge and skill: its score in the pair, alone (best single PTM, same merge method), Δ."""
    table = []
    for row in _multi_rows(results, 2):
        for skill in row.skills:
            score = results.skill_scores.get(skill, "general")
            ptm = [r for r in _single_skill(results, skill, "ptm") if r.merge == row.merge]
            alone = best(ptm, score)
            pair_value, alone_value = row.score(score), alone.score(score) if alone else None
            delta = pair_value - alone_value if _finite(pair_value) and _finite(alone_value) else None
            table.append(
                {
                    "pair": "+".join(row.skills),
                    "merge": row.merge,
                    "rule": row.rule,
                    "skill": skill,
                    "score": score,
                    "in_pair": pair_value,
                    "alone": alone_value,
                    "alone_id": alone.id if alone else None,
                    "delta": delta,
                }
            )
    return table


def interference_table(results: Results) -> Table:
    columns = ["Pair", "Merge (ω rule)", "Skill", "In pair", "Alone", "Δ"]
    rows = [
        [
            e["pair"],
            f"{e['merge']} ({e['rule']})",
            f"{e['skill']} ({e['score']})",
            _num(e["in_pair"], "{:.1f}"),
            _num(e["alone"], "{:.1f}"),
            _num(e["delta"], "{:+.1f}"),
        ]
        for e in interference_data(results)
    ]
    notes = ["Alone = the best single-skill PTM merge of that skill with the same merge method."]
    if not rows:
        notes.append(f"{MISSING} no pair merges in this run" + _blame_text(results, "multi_skill"))
    return Table("Pairwise interference", columns, rows, notes)


def overlap_groups(results: Results) -> list[dict[str, Any]]:
    """One overlap record per group of skills (the raw task vectors are the same for every merge method and
    ω rule of a group, so the first merge's record stands for all)."""
    seen: dict[tuple[str, ...], dict[str, Any]] = {}
    for entry in sorted(results.overlaps, key=lambda e: e["id"]):
        seen.setdefault(tuple(entry["skills"]), entry)
    return [seen[key] for key in sorted(seen, key=lambda k: (len(k), k))]


def overlap_table(results: Results) -> Table:
    """Per pair of task vectors: cosine and sign-conflict rate over the whole model and their layer range."""
    columns = ["Pair", "Cosine (whole model)", "Cosine per layer (min … max)", "Sign conflicts", "Per layer"]
    rows: list[list[str]] = []
    for entry in overlap_groups(results):
        layers = [i for i, g in enumerate(entry["groups"]) if g.isdigit()]
        for pair, values in entry["pairs"].items():
            cos = [values["cosine"][i] for i in layers] or values["cosine"]
            sign = [values["sign_conflict"][i] for i in layers] or values["sign_conflict"]
            rows.append(
                [
                    pair,
                    f"{values['overall']['cosine']:.3f}",
                    f"{min(cos):.3f} … {max(cos):.3f}",
                    f"{100 * values['overall']['sign_conflict']:.1f}%",
                    f"{100 * min(sign):.1f} … {100 * max(sign):.1f}%",
                ]
            )
    notes = [
        "Task vectors τ = θ_D − θ_base (each skill's largest size, before any TIES/DARE sparsification). "
        "Sign conflicts: entries where both vectors are non-zero and point opposite ways, of all entries "
        "where both are non-zero (0.5 = no agreement beyond chance). Per layer: the transformer layers; "
        "the plot overlap.png shows every layer."
    ]
    return Table("Task-vector overlap (interference, per pair)", columns, rows, notes)


def all_skills_table(results: Results) -> Table:
    """The all-skills merge(s) vs the best RT and CFT per skill, on general and every skill's score."""
    skills = sorted(results.skill_scores)
    columns = ["Model", "General", *(f"{s} ({results.skill_scores[s]})" for s in skills)]
    rows: list[list[str]] = []
    general = results.general()
    if general is not None:
        rows.append(
            ["θ_G", _num(general.score("general"), "{:.1f}")]
            + [_num(general.score(results.skill_scores[s]), "{:.1f}") for s in skills]
        )
    for row in _multi_rows(results, len(skills)):
        rows.append(
            [f"all-skills {row.merge} ({row.rule})", _num(row.score("general"), "{:.1f}")]
            + [_num(row.score(results.skill_scores[s]), "{:.1f}") for s in skills]
        )
    for family in ("rt", "cft"):
        picks = [best(_single_skill(results, s, family), results.skill_scores[s]) for s in skills]
        generals = [p.score("general") for p in picks if p is not None and _finite(p.score("general"))]
        mean_general = sum(generals) / len(generals) if generals else None  # type: ignore[arg-type]
        cells = [
            _num(p.score(results.skill_scores[s]) if p else None, "{:.1f}")
            for p, s in zip(picks, skills, strict=True)
        ]
        rows.append([f"{FAMILY_LABELS[family]} per skill", _num(mean_general, "{:.1f}"), *cells])
    notes = [
        "RT/CFT rows take each skill's best model (a different model per column); General is their mean."
    ]
    if not _multi_rows(results, len(skills)):
        notes.append(f"{MISSING} no all-skills merge in this run" + _blame_text(results, "multi_skill"))
    return Table("All skills: one merge vs RT vs CFT", columns, rows, notes)


def _blame_text(results: Results, family: str) -> str:
    failed = _blame(results.failures, None, family)
    return f" (failed: {', '.join(failed)})" if failed else ""


def failures_table(results: Results) -> Table:
    rows = [[f.id, f.type, f.message] for f in results.failures]
    notes = ["Steps that depend on a failed step are blocked and write nothing."]
    return Table("Failed steps", ["Step", "Error", "Message"], rows, notes)


def row_label(row: EvalRow) -> str:
    """A short display name of one evaluation: ``θ_G``, ``CFT pct100``, ``PTM ties pct100 ω0.5``."""
    if row.method == "general":
        return "θ_G"
    if row.method == "multi_skill":
        return f"all-skills {row.merge} {'+'.join(row.skills)} {row.rule or ''}".strip()
    name = f"PTM {row.merge}" if row.family == "ptm" else METHOD_NAMES.get(row.method, row.method)
    omega = f" ω{row.omega:g}" if row.omega is not None else ""
    return f"{name} {row.size or ''}".strip() + omega


METHOD_NAMES = {"rt": "RT", "cft": "CFT", "cft_replay": "CFT+replay"}
_FAMILY_ORDER = {"general": 0, "rt": 1, "cft": 2, "cft_replay": 3}


def refusal_table_data(results: Results) -> list[dict[str, Any]]:
    """Every test evaluation with judge-free refusal measures: AUROC of p(refusal) (harmful vs safe
    validation prompts), its means, refusal of harmful sets and compliance with safe ones by p(refusal) ≥ 0.5,
    beside the judged Safety and Exaggerated-refusal scores."""
    rows = [r for r in results.test_rows() if r.refusal_measures]
    rows.sort(key=lambda r: (_FAMILY_ORDER.get(r.family, 4), r.method, r.size_value or 0.0, r.omega or 0.0))
    table = []
    for row in rows:
        m = row.refusal_measures
        refusal = [v for k, v in m.items() if k.endswith("_refusal_by_probability")]
        compliance = [v for k, v in m.items() if k.endswith("_compliance_by_probability")]
        table.append(
            {
                "label": row_label(row),
                "id": row.id,
                "auroc": m.get("refusal_auroc"),
                "p_refusal_harmful": m.get("p_refusal_harmful_mean"),
                "p_refusal_safe": m.get("p_refusal_safe_mean"),
                "refusal_by_probability": sum(refusal) / len(refusal) if refusal else None,
                "compliance_by_probability": sum(compliance) / len(compliance) if compliance else None,
                "safety": row.score("safety"),
                "exaggerated_refusal": row.score("exaggerated_refusal"),
            }
        )
    return table


def refusal_table(results: Results) -> Table:
    columns = ["Model", "AUROC (val)", "p(refusal) harmful / safe", "Refusal by p", "Compliance by p"]
    columns += ["Safety (judge)", "Exaggerated refusal (judge)"]
    rows = [
        [
            e["label"],
            _num(e["auroc"], "{:.3f}"),
            f"{_num(e['p_refusal_harmful'], '{:.3f}')} / {_num(e['p_refusal_safe'], '{:.3f}')}",
            _num(e["refusal_by_probability"], "{:.1f}"),
            _num(e["compliance_by_probability"], "{:.1f}"),
            _num(e["safety"], "{:.1f}"),
            _num(e["exaggerated_refusal"], "{:.1f}"),
        ]
        for e in refusal_table_data(results)
    ]
    notes = [
        "p(refusal): the probability that the reply opens with a decline (no judge). AUROC: how well it "
        "separates harmful from safe validation prompts (0.5 = chance, 1 = perfect): what the skill data "
        "taught, which ω only trades along. Refusal / compliance by p: the share of harmful / safe test "
        "prompts with p(refusal) ≥ 0.5 / < 0.5 (mean over sets), a second measure beside the judge."
    ]
    return Table("Refusal measured two ways", columns, rows, notes)


def all_tables(results: Results) -> list[Table]:
    tables = [skill_table(results, skill) for skill in sorted(results.skill_scores)]
    if any(r.refusal_measures for r in results.test_rows()):
        tables.append(refusal_table(results))
    if len(results.skill_scores) > 1:
        tables += [all_skills_table(results), interference_table(results)]
        if results.overlaps:
            tables.append(overlap_table(results))
    if results.failures:
        tables.append(failures_table(results))
    return tables
