"""``skillmerge eval MODEL --lm-eval TASK[,TASK]``: run EleutherAI lm-evaluation-harness tasks on the model
and fold their metrics into our summary as one more suite, ``lm-eval``.

lm-eval is optional: without it the request is refused with one line. Its tasks fetch their data from the
hub, so they work only online (or with a warm datasets cache). Each task's headline metric (the first of
:data:`PRIMARY_METRICS` it reports) becomes a component of the General aggregate, as the paper counts
benchmarks such as MMLU and GSM8K under General.

Not exercised by the test suite beyond the refusal (lm-eval is not installed on the CI machine).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skillmerge.errors import UsageError
from skillmerge.evaluate.suites.base import SuiteResult

SUITE_NAME = "lm-eval"
PRIMARY_METRICS: tuple[str, ...] = ("acc_norm", "acc", "exact_match", "prompt_level_strict_acc", "f1", "mc2")


def parse_tasks(spec: str | Sequence[str] | None) -> list[str]:
    """``"a,b" `` or ``["a", "b,c"]`` → ``["a", "b", "c"]`` (order kept, duplicates dropped)."""
    if spec is None:
        return []
    parts = [spec] if isinstance(spec, str) else list(spec)
    tasks: list[str] = []
    for part in parts:
        for task in part.split(","):
            if task.strip() and task.strip() not in tasks:
                tasks.append(task.strip())
    return tasks


def lm_eval_available() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


def require_lm_eval() -> None:
    if not lm_eval_available():
        raise UsageError("--lm-eval needs the lm-eval package, which is not installed (pip install lm-eval)")


def fold_results(results: Mapping[str, Any], tasks: Sequence[str]) -> SuiteResult:
    """lm-eval's ``results`` dict → a :class:`SuiteResult`: ``task/metric`` entries, components per task.

    lm-eval keys metrics as ``"metric,filter"`` (e.g. ``"acc,none"``); standard errors are dropped.
    """
    per_task: Mapping[str, Mapping[str, Any]] = results.get("results", {})
    metrics: dict[str, float] = {}
    components: dict[str, float] = {}
    for task, values in per_task.items():
        primary: dict[str, float] = {}
        for key, value in values.items():
            metric = key.split(",")[0]
            if not isinstance(value, int | float) or isinstance(value, bool) or metric.endswith("_stderr"):
                continue
            metrics[f"{task}/{key}"] = float(value)
            primary.setdefault(metric, float(value))
        for name in PRIMARY_METRICS:
            if name in primary and 0.0 <= primary[name] <= 1.0:
                components[f"lm-eval/{task}"] = primary[name]
                break
    if components:
        metrics["score"] = sum(components.values()) / len(components)
    meta = {
        "category": "general",
        "components": components,
        "tasks": list(tasks),
        "versions": dict(results.get("versions", {})),
        "n_samples": {k: v for k, v in dict(results.get("n-samples", {})).items()},
    }
    return SuiteResult(SUITE_NAME, metrics, [], meta)


def run_lm_eval(
    model_dir: str | Path,
    tasks: Sequence[str],
    *,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    apply_chat_template: bool = True,
) -> SuiteResult:
    """``lm_eval.simple_evaluate`` with the HF model at ``model_dir`` on ``tasks``, folded into a suite."""
    require_lm_eval()
    if not tasks:
        raise UsageError("--lm-eval: no task names given")
    import lm_eval

    try:
        results = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={model_dir},dtype=auto",
            tasks=list(tasks),
            limit=limit,
            batch_size=batch_size,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            apply_chat_template=apply_chat_template,
        )
    except (KeyError, ValueError) as err:  # unknown task names surface here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"--lm-eval {','.join(tasks)}: {first}") from None
    if results is None:  # non-zero ranks under distributed launch
        raise UsageError("--lm-eval returned no results (run it in a single process)")
    return fold_results(results, tasks)
