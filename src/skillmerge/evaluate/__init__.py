"""Offline evaluation: ``skillmerge.evaluate.run(model_dir, suites, out_dir)`` → per-suite results and the
paper's aggregate scores.

The output directory appears atomically (a temporary sibling renamed into place) and holds::

    <suite>/items.jsonl    one line per item: id, prompt, completion, verdict, score, reason, meta
    <suite>/summary.json   metrics, headline score, category, components, sizes, seconds
    scores.json            the paper's aggregates and every component
    manifest.json          model, fingerprint, suites, options, backend, template, versions, seed, wall time

Aggregates (:func:`paper_scores`), each on a 0-100 scale, ``None`` when no suite of that kind ran:

- General = 100 · mean of the general task scores (knowledge, math, instruction following, lm-eval tasks);
- Science = 100 · mean of the science task scores;
- Safety = 100 · mean over harmful sets of (1 − compliance rate);
- Exaggerated refusal = XSTest-safe compliance %;
- Coding = 100 · mean pass@k.

Components come from each suite (see :mod:`skillmerge.evaluate.suites`); a task is counted once even if two
suites report it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skillmerge.atomic import atomic_dir
from skillmerge.errors import UsageError
from skillmerge.evaluate.suites.base import ModelBackend, Suite, SuiteResult

SCORE_LABELS: dict[str, str] = {
    "general": "General",
    "science": "Science",
    "safety": "Safety",
    "exaggerated_refusal": "Exaggerated refusal",
    "coding": "Coding",
}


def paper_scores(
    results: Sequence[SuiteResult], categories: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The paper's aggregates (0-100) over ``results`` with their components (fractions in [0, 1]).

    ``categories`` maps a suite name to the aggregate it counts towards, over the suite's registered
    category (an experiment spec's ``eval: {general: [general-mc, perplexity]}`` puts ``perplexity``,
    which has no category of its own, into General).
    """
    from skillmerge.evaluate.suites import suite_category, suite_components

    components: dict[str, dict[str, float]] = {key: {} for key in SCORE_LABELS}
    unaggregated: list[str] = []
    for result in results:
        category = (categories or {}).get(result.suite) or suite_category(result.suite, result)
        parts = suite_components(result, category)
        if category not in components or not parts:
            unaggregated.append(result.suite)
            continue
        components[category].update(parts)
    scores: dict[str, Any] = {}
    for key, parts in components.items():
        scores[key] = 100.0 * sum(parts.values()) / len(parts) if parts else None
    scores["labels"] = SCORE_LABELS
    scores["components"] = {key: parts for key, parts in components.items() if parts}
    scores["unaggregated"] = unaggregated
    scores["scale"] = "aggregates 0-100; components are fractions in [0, 1]; higher is better"
    return scores


def _json_line(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def _write_suite(folder: Path, result: SuiteResult, summary: Mapping[str, Any]) -> None:
    folder.mkdir(parents=True)
    # backslashreplace: a lone surrogate in a completion becomes the text "\udcxx", still valid JSON.
    with open(folder / "items.jsonl", "w", encoding="utf-8", errors="backslashreplace") as handle:
        for item in result.items:
            handle.write(_json_line(item.to_dict()) + "\n")
    (folder / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )


def _model_fingerprint(model_dir: Path) -> str | None:
    from skillmerge.models.io import recorded_fingerprint

    return recorded_fingerprint(model_dir)


def run(
    model_dir: str | Path,
    suites: Sequence[str],
    out_dir: str | Path,
    *,
    limit: int | None = None,
    seed: int = 0,
    backend: str | ModelBackend = "auto",
    template: str | None = None,
    force_template: bool = False,
    overwrite: bool = False,
    suite_options: Mapping[str, Mapping[str, Any]] | None = None,
    lm_eval_tasks: Sequence[str] | None = None,
    batch_size: int = 16,
    categories: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on ``suites`` and write ``out_dir`` (layout in the module docstring).

    ``backend``: ``"auto"`` (vLLM when installed and a GPU is present, else HF), ``"hf"``, ``"vllm"``, or a
    ready :class:`~skillmerge.evaluate.suites.base.ModelBackend` (then ``model_dir`` is only recorded).
    ``limit``/``seed`` subsample each suite's items (a suite's own ``limit`` option overrides ``limit`` for
    it; ``None`` there means all of its items). ``suite_options`` maps a suite name to keyword options
    of its factory. ``categories`` overrides suites' aggregates (:func:`paper_scores`).
    ``lm_eval_tasks`` adds an ``lm-eval`` suite (needs the lm-eval package). Everything is
    validated (suite names and options, the output path) before the model is loaded. Returns the scores,
    each suite's metrics and the output path.
    """
    from skillmerge.evaluate.lm_eval_bridge import SUITE_NAME as LM_EVAL
    from skillmerge.evaluate.lm_eval_bridge import require_lm_eval
    from skillmerge.evaluate.suites import get_suite

    names = list(dict.fromkeys(suites))
    tasks = list(lm_eval_tasks or [])
    if not names and not tasks:
        raise UsageError("nothing to evaluate: give at least one --suite (or --lm-eval TASK)")
    options = dict(suite_options or {})
    if tasks:  # --lm-eval TASKS is the lm-eval suite with those tasks
        require_lm_eval()
        if (options.get(LM_EVAL) or {}).get("tasks"):
            raise UsageError(
                "lm-eval tasks given twice: as --lm-eval and as the lm-eval suite's tasks option"
            )
        options[LM_EVAL] = {**(options.get(LM_EVAL) or {}), "tasks": tasks}
        names = [*names, LM_EVAL] if LM_EVAL not in names else names
    unknown_options = sorted(set(options) - set(names))
    if unknown_options:
        raise UsageError(f"suite options given for suites not being run: {', '.join(unknown_options)}")
    # A suite's own ``limit`` option overrides ``limit`` for that suite (``null``: all of its items).
    limits = {name: limit for name in names}
    for name in names:
        suite_opts = dict(options.get(name) or {})
        if "limit" in suite_opts:
            own = suite_opts.pop("limit")
            if own is not None and (not isinstance(own, int) or isinstance(own, bool) or own < 1):
                raise UsageError(f"suite {name}: option limit must be an integer ≥ 1 or null, got {own!r}")
            limits[name] = own
            options[name] = suite_opts
    built: list[Suite] = [get_suite(name, **dict(options.get(name, {}))) for name in names]
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if isinstance(backend, str) and not model_dir.is_dir():
        raise UsageError(f"{model_dir}: model directory does not exist")

    start = time.perf_counter()
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        if isinstance(backend, str):
            from skillmerge.evaluate.vllm_backend import select_backend

            model_backend = select_backend(
                model_dir, backend, template=template, force_template=force_template, batch_size=batch_size
            )
        else:
            model_backend = backend
        results: list[SuiteResult] = []
        summaries: dict[str, dict[str, Any]] = {}
        for name, suite in zip(names, built, strict=True):
            suite_start = time.perf_counter()
            result = suite.run(model_backend, limit=limits[name], seed=seed)
            result.suite = name  # the registered name is the folder and the key, whatever the class says
            results.append(result)
            summaries[name] = _summary(result, time.perf_counter() - suite_start, model_backend.name)
        for result in results:
            _write_suite(tmp / result.suite, result, summaries[result.suite])
        scores = paper_scores(results, categories)
        (tmp / "scores.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
        manifest = _manifest(model_dir, model_backend, names, tasks, limit, seed, suite_options, start)
        manifest["scores"] = {k: scores[k] for k in SCORE_LABELS}
        (tmp / "manifest.json").write_text(
            json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8"
        )
    return {
        "out_dir": str(out_dir),
        "scores": scores,
        "suites": {name: summary["metrics"] for name, summary in summaries.items()},
    }


def _summary(result: SuiteResult, seconds: float, backend_name: str) -> dict[str, Any]:
    from skillmerge.evaluate.suites import headline_score, suite_category, suite_components

    category = suite_category(result.suite, result)
    return {
        "suite": result.suite,
        "category": category,
        "headline": headline_score(result, category),
        "components": suite_components(result, category),
        "metrics": result.metrics,
        "n_items": len(result.items),
        "seconds": round(seconds, 3),
        "backend": backend_name,
        "meta": result.meta,
    }


def _manifest(
    model_dir: Path,
    backend: ModelBackend,
    suites: list[str],
    tasks: list[str],
    limit: int | None,
    seed: int,
    suite_options: Mapping[str, Any] | None,
    start: float,
) -> dict[str, Any]:
    from skillmerge.models.io import library_versions

    template = getattr(backend, "template", None)
    stats = getattr(backend, "stats", None)
    return {
        "kind": "eval",
        "model": str(model_dir),
        "model_fingerprint": _model_fingerprint(model_dir) if model_dir.is_dir() else None,
        "suites": suites,
        "lm_eval_tasks": tasks,
        "limit": limit,
        "seed": seed,
        "suite_options": dict(suite_options or {}),
        "backend": backend.name,
        "chat_template": getattr(template, "name", None),
        "generation_stats": stats.to_dict() if hasattr(stats, "to_dict") else None,
        "library_versions": library_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - start, 3),
    }


__all__ = ["SCORE_LABELS", "paper_scores", "run"]
