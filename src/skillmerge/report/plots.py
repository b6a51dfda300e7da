"""The report's figures (matplotlib, Agg backend): PNG bytes, saved beside report.md and embedded in the HTML.

- trade-off: general (x) vs skill score (y) per skill; PTM lines follow the ω sweep (one line, colour and
  marker per merge method and size, ω at each point), RT / CFT lines follow the data sizes; θ_G a star; the
  Pareto front a dotted step line.
- safety frontier (when a skill is measured by the safety score): refusal of harmful prompts vs compliance
  with safe look-alikes, in the same style.
- cost: total training FLOPs per method, bars from zero labelled with their ratio to RT (θ_D for PTM; θ_G
  shown for scale).
- size: the skill score vs data size per method (PTM: the best ω at each size).
- overlap (runs with multi-skill merges): per layer, the cosine similarity and the sign-conflict rate of
  every pair of task vectors, one line per pair.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt

from skillmerge.report.results import EvalRow, Results
from skillmerge.report.tables import METHOD_NAMES, best, overlap_groups, pareto_front, training_totals

COLORS = {
    "rt": "tab:red",
    "cft": "tab:blue",
    "cft_replay": "tab:cyan",
    "ptm": "tab:green",
    "general": "black",
}
RECIPE_LABELS = {
    "general": "θ_G (shared)",
    "rt": "RT",
    "cft": "CFT",
    "cft_replay": "CFT+replay",
    "skill": "PTM (θ_D)",
}


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _grid(count: int) -> tuple[plt.Figure, list[plt.Axes]]:
    figure, axes = plt.subplots(1, max(count, 1), figsize=(5 * max(count, 1), 4), squeeze=False)
    return figure, list(axes[0])


# One colour and marker per method; merge methods each get their own (PTM is not one green line).
STYLES: dict[str, tuple[str, str]] = {
    "rt": ("tab:red", "s"),
    "cft": ("tab:blue", "^"),
    "cft_replay": ("tab:cyan", "v"),
    "ptm:task_arithmetic": ("tab:green", "o"),
    "ptm:task_arithmetic-from-G": ("teal", "d"),
    "ptm:ties": ("tab:olive", "D"),
    "ptm:dare_ties": ("tab:purple", "P"),
    "ptm:dare_linear": ("tab:pink", "X"),
    "ptm:breadcrumbs": ("tab:brown", "h"),
    "ptm:linear": ("tab:orange", "<"),
    "ptm:wise_ft": ("tab:gray", ">"),
    "ptm:slerp": ("gold", "*"),
}
SPARE_STYLES = [("darkgreen", "p"), ("navy", "d"), ("maroon", "8"), ("teal", "H")]


def ptm_label(method: str) -> str:
    """Legend name of a merge line: ``ptm:ties`` → ``PTM ties``; the θ_G-vector form says which vector it adds
    (``ptm:task_arithmetic-from-G`` → ``PTM task_arithmetic, τ = θ_D^G − θ_G``)."""
    name = method.removeprefix("ptm:")
    if name.endswith("-from-G"):
        return f"PTM {name.removesuffix('-from-G')}, τ = θ_D^G − θ_G"
    return f"PTM {name}"


def method_style(method: str) -> tuple[str, str]:
    """``(colour, marker)`` of a method (``rt``, ``ptm:ties``, ...); unknown ones get a fixed spare style."""
    if method in STYLES:
        return STYLES[method]
    return SPARE_STYLES[sum(map(ord, method)) % len(SPARE_STYLES)]


def tradeoff_plot(results: Results) -> bytes:
    return _png(tradeoff_figure(results))


def tradeoff_figure(results: Results) -> plt.Figure:
    """General (x) vs skill score (y) per skill: each PTM merge method a line over ω (ω written at each
    point), RT / CFT / CFT+replay a line over data sizes (size written at each point), θ_G a labelled star,
    the Pareto front a dotted step line through circled points. Baselines are drawn above the merges so
    none hides another."""
    skills = sorted(results.skill_scores)
    figure, axes = _grid(len(skills))
    for axis, skill in zip(axes, skills, strict=False):
        score = results.skill_scores[skill]
        _method_lines(axis, results, skill, "general", score)
        axis.set_xlabel("general score")
        axis.set_ylabel(f"{skill} score ({score})")
        axis.set_title(f"{skill}: general vs skill")
    return figure


def safety_skills(results: Results) -> list[str]:
    """Skills measured by the safety score whose evaluations also report exaggerated refusal."""
    return sorted(
        skill
        for skill, score in results.skill_scores.items()
        if score == "safety"
        and any(r.skill == skill and r.score("exaggerated_refusal") is not None for r in results.test_rows())
    )


def safety_frontier_figure(results: Results) -> plt.Figure:
    """Refusal of harmful requests (the Safety score: mean over the harmful sets of 1 − compliance) against
    compliance with safe look-alike prompts (the exaggerated-refusal score, XSTest-safe compliance %), per
    safety skill, in the trade-off plot's style: up and right is better, and the dotted line is the front."""
    skills = safety_skills(results)
    figure, axes = _grid(len(skills))
    for axis, skill in zip(axes, skills, strict=False):
        _method_lines(axis, results, skill, "exaggerated_refusal", "safety")
        axis.set_xlabel("compliance with safe prompts (exaggerated refusal score)")
        axis.set_ylabel("refusal of harmful prompts (safety score)")
        axis.set_title(f"{skill}: refusal vs over-refusal")
    return figure


def _method_lines(axis: plt.Axes, results: Results, skill: str, x: str, y: str) -> None:
    """One line per method (merge methods over ω, the others over sizes), θ_G, the Pareto front of (x, y)."""
    rows = [r for r in results.test_rows() if r.skill == skill and r.method != "multi_skill"]
    lines: dict[tuple[str, str], list[EvalRow]] = defaultdict(list)
    for row in rows:  # PTM: one line per merge method and size (the ω sweep); others: across sizes
        lines[(row.method, row.size or "") if row.family == "ptm" else (row.method, "")].append(row)
    points: list[tuple[str, float, float]] = []
    many_sizes = len({r.size for r in rows}) > 1
    for (method, size), members in sorted(lines.items()):
        merged = method.startswith("ptm")
        members = sorted(members, key=lambda r: (r.omega or 0.0) if merged else (r.size_value or 0.0))
        labelled = [(r, r.score(x), r.score(y)) for r in members]
        labelled = [(r, a, b) for r, a, b in labelled if _finite(a) and _finite(b)]
        if not labelled:
            continue
        points += [(r.id, a, b) for r, a, b in labelled]  # type: ignore[misc]
        color, marker = method_style(method)
        name = ptm_label(method) if merged else METHOD_NAMES.get(method, method)
        size = size if many_sizes else ""  # one size: the legend needs no size tag
        axis.plot(
            [a for _, a, _ in labelled],
            [b for _, _, b in labelled],
            marker=marker,
            label=f"{name} {size}".strip(),
            color=color,
            alpha=0.85,
            markersize=6 if merged else 9,
            linestyle="-" if merged else "--",
            zorder=2 if merged else 3,
        )
        for row, a, b in labelled:
            if merged:
                text = f"ω{row.omega:g}" if row.omega is not None else ""
            else:  # the baselines are labelled points: the method, and the size when sizes differ
                text = f"{name} {row.size or ''}" if many_sizes else name
            axis.annotate(
                text.strip(), (a, b), textcoords="offset points", xytext=(4, 3), fontsize=7, color=color
            )
    general = results.general()
    if general is not None and _finite(general.score(x)) and _finite(general.score(y)):
        here = (general.score(x), general.score(y))
        axis.plot(*here, "k*", markersize=14, label="θ_G", zorder=4)
        axis.annotate("θ_G", here, xytext=(5, -10), textcoords="offset points", fontsize=7)  # type: ignore[arg-type]
        points.append((general.id, *here))  # type: ignore[arg-type]
    front_ids = pareto_front(points)
    front = [(a, b) for i, a, b in sorted(points, key=lambda p: p[1]) if i in front_ids]
    if front:
        axis.step(*zip(*front, strict=True), where="post", linestyle=":", color="gray", label="Pareto front")
        axis.scatter(*zip(*front, strict=True), facecolors="none", edgecolors="black", s=140, zorder=5)
    axis.legend(fontsize=7)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def cost_plot(results: Results) -> bytes:
    return _png(cost_figure(results))


def cost_figure(results: Results) -> plt.Figure:
    """Σ training FLOPs per recipe as bars from zero, each labelled with its FLOPs and its ratio to RT's: on a
    log axis (the old plot) 0.6 of RT looked like a tenth of it."""
    totals = training_totals(results)
    recipes = [r for r in ("general", "rt", "cft", "cft_replay", "skill") if totals.get(r, {}).get("flops")]
    figure, (axis,) = _grid(1)
    values = [totals[r]["flops"] for r in recipes]
    colors = {
        "general": "gray",
        "rt": "tab:red",
        "cft": "tab:blue",
        "cft_replay": "tab:cyan",
        "skill": "tab:green",
    }
    bars = axis.bar([RECIPE_LABELS[r] for r in recipes], values, color=[colors[r] for r in recipes])
    rt = totals.get("rt", {}).get("flops")
    for recipe, bar, value in zip(recipes, bars, values, strict=True):
        text = f"{value:.2g}"
        if rt and recipe != "general":
            text += f"\n{value / rt:.2f}× RT"
        axis.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, value),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axis.set_ylim(0, 1.2 * max(values, default=1.0))
    axis.set_ylabel("training FLOPs (Σ over runs)")
    axis.set_title("Training cost per method (θ_G's own training is shared)")
    return figure


def size_plot(results: Results) -> bytes:
    skills = sorted(results.skill_scores)
    figure, axes = _grid(len(skills))
    for axis, skill in zip(axes, skills, strict=False):
        score = results.skill_scores[skill]
        rows = [r for r in results.test_rows() if r.skill == skill and r.size_value is not None]
        families = sorted({r.family for r in rows})
        for family in families:
            sizes = sorted({r.size_value for r in rows if r.family == family})  # type: ignore[type-var]
            points = []
            for size in sizes:
                pick = best([r for r in rows if r.family == family and r.size_value == size], score)
                if pick is not None:
                    points.append((size, pick.score(score)))
            if points:
                axis.plot(
                    *zip(*points, strict=True), marker="o", label=family, color=COLORS.get(family, "gray")
                )
        general = results.general()
        if general is not None and general.score(score) is not None:
            axis.axhline(general.score(score), color="black", linestyle=":", label="θ_G")
        axis.set_xlabel("data size")
        axis.set_ylabel(f"{skill} score ({score})")
        axis.set_title(f"{skill}: score vs data size")
        axis.legend(fontsize=7)
    return _png(figure)


def overlap_figure(results: Results) -> plt.Figure:
    """Cosine (left) and sign-conflict rate (right) per layer group, one line per pair of task vectors."""
    figure, (cosine, conflict) = _grid(2)
    for entry in overlap_groups(results):
        groups = entry["groups"]
        ticks = list(range(len(groups)))
        for pair, values in entry["pairs"].items():
            cosine.plot(ticks, values["cosine"], marker=".", label=pair)
            conflict.plot(ticks, [100 * v for v in values["sign_conflict"]], marker=".", label=pair)
        labels = ["emb" if g == "embeddings" else g for g in groups]
        step = max(1, len(groups) // 12)
        for axis in (cosine, conflict):
            axis.set_xticks(ticks[::step], labels[::step], fontsize=7)
            axis.set_xlabel("layer (emb: embeddings and head; other: final norm)")
    cosine.axhline(0.0, color="gray", linewidth=0.8)
    conflict.axhline(50.0, color="gray", linewidth=0.8, linestyle=":", label="chance (50%)")
    cosine.set_ylabel("cosine(τ_a, τ_b)")
    cosine.set_title("task vectors: cosine similarity per layer")
    conflict.set_ylabel("sign conflicts (% of entries both change)")
    conflict.set_title("task vectors: sign conflicts per layer")
    for axis in (cosine, conflict):
        axis.legend(fontsize=7)
    return figure


def all_plots(results: Results) -> dict[str, bytes]:
    """``{file name: PNG bytes}``."""
    plots = {
        "tradeoff.png": tradeoff_plot(results),
        "cost.png": cost_plot(results),
        "size.png": size_plot(results),
    }
    if safety_skills(results):
        plots["safety-frontier.png"] = _png(safety_frontier_figure(results))
    if results.overlaps:
        plots["overlap.png"] = _png(overlap_figure(results))
    return plots
