"""EleutherAI lm-evaluation-harness (0.4.x) on a model directory, folded into our results as one suite.

``skillmerge eval MODEL --lm-eval TASKS`` and the ``lm-eval`` suite of a spec
(:mod:`skillmerge.evaluate.suites.lm_eval_suite`) both come here. lm-eval loads the directory with its own
``hf`` model (on the device and in the dtype our backend uses) and runs the tasks with its own prompts,
metrics and filters; nothing of ours scores them, which is what makes it a second opinion.

Tasks are lm-eval's registered names (their data come from the hub, so online or from a warm datasets
cache) or **local task files**: a task YAML, or a folder of them, whose ``dataset_kwargs.data_files`` name
local JSON/CSV/Parquet files. Relative data paths are taken relative to the YAML file (lm-eval itself would
take them relative to the working directory); the folder is copied to a temporary directory with those
paths made absolute, so ``!function`` helpers beside the YAML keep working. With only local tasks,
lm-eval's built-in task index is not loaded (seconds saved, nothing fetched).

Each task's headline metric (the first of :data:`PRIMARY_METRICS` it reports) becomes a component of the
General aggregate, as the paper counts benchmarks such as MMLU and GSM8K under General. lm-eval's
per-sample records become our items (``lm-eval/items.jsonl``): the id ``task/doc_id``, the context, the
picked choice or the generated text, and that metric as the item's score; for multiple choice the
log-likelihood of every choice is kept in ``meta``.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillmerge.errors import DataError, UsageError
from skillmerge.evaluate.suites.base import ItemResult, SuiteResult

SUITE_NAME = "lm-eval"
PRIMARY_METRICS: tuple[str, ...] = ("acc_norm", "acc", "exact_match", "prompt_level_strict_acc", "f1", "mc2")
TASK_SUFFIXES = (".yaml", ".yml")


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


# ------------------------------------------------------------------------------------------ local tasks


class _Tagged:
    """A YAML node with a tag we do not interpret (lm-eval's ``!function``), written back as it was read."""

    def __init__(self, tag: str, value: Any) -> None:
        self.tag, self.value = tag, value


def _yaml_io() -> tuple[type, type]:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    class Dumper(yaml.SafeDumper):
        pass

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tagged:
        if isinstance(node, yaml.ScalarNode):
            return _Tagged("!" + suffix, loader.construct_scalar(node))
        if isinstance(node, yaml.SequenceNode):
            return _Tagged("!" + suffix, loader.construct_sequence(node, deep=True))
        return _Tagged("!" + suffix, loader.construct_mapping(node, deep=True))  # type: ignore[arg-type]

    def represent(dumper: yaml.SafeDumper, data: _Tagged) -> yaml.Node:
        if isinstance(data.value, list):
            return dumper.represent_sequence(data.tag, data.value)
        if isinstance(data.value, dict):
            return dumper.represent_mapping(data.tag, data.value)
        return dumper.represent_scalar(data.tag, str(data.value))

    Loader.add_multi_constructor("!", construct)
    Dumper.add_representer(_Tagged, represent)
    return Loader, Dumper


def _read_task_yaml(path: Path) -> dict[str, Any]:
    import yaml

    loader, _ = _yaml_io()
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # a SafeLoader subclass
    except (OSError, yaml.YAMLError) as err:
        raise DataError(f"{path}: not a readable lm-eval task file ({str(err).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise DataError(f"{path}: an lm-eval task file must be a mapping")
    return loaded


def _absolute_data_files(value: Any, folder: Path) -> Any:
    """``data_files`` (a path, a list, or ``{split: path or list}``), relative local paths made absolute."""
    if isinstance(value, str):
        if "://" in value or Path(value).is_absolute():
            return value
        return str((folder / value).resolve())
    if isinstance(value, list):
        return [_absolute_data_files(v, folder) for v in value]
    if isinstance(value, dict):
        return {k: _absolute_data_files(v, folder) for k, v in value.items()}
    return value


@dataclass
class LocalTasks:
    """Local task files prepared for lm-eval: the folder to include and the task names they define."""

    include: Path
    names: list[str]


def task_files(path: Path) -> list[Path]:
    """The task YAML files of ``path`` (a file, or every ``*.yaml``/``*.yml`` under a folder, sorted)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in TASK_SUFFIXES and p.is_file())
    raise UsageError(f"{path}: lm-eval task file or folder does not exist")


def prepare_local_tasks(paths: Sequence[Path], into: Path) -> LocalTasks:
    """Copy each task file or folder under ``into``, relative ``data_files`` resolved (module docstring)."""
    import yaml

    _, dumper = _yaml_io()
    names: list[str] = []
    for i, source in enumerate(paths):
        source = Path(source).resolve()
        files = task_files(source)
        if not files:
            raise UsageError(f"{source}: no lm-eval task files (*.yaml) in this folder")
        target = into / f"{i}-{source.stem if source.is_file() else source.name}"
        root = source.parent if source.is_file() else source
        for file in files:
            task = _read_task_yaml(file)
            copied = target / file.relative_to(root)
            copied.parent.mkdir(parents=True, exist_ok=True)
            kwargs = task.get("dataset_kwargs")
            if isinstance(kwargs, dict) and "data_files" in kwargs:
                kwargs["data_files"] = _absolute_data_files(kwargs["data_files"], file.parent)
            copied.write_text(yaml.dump(task, Dumper=dumper, sort_keys=False), encoding="utf-8")
            for name in _names(task.get("task")):
                if name not in names:
                    names.append(name)
        if source.is_dir():  # helpers (!function utils.x) and anything else the tasks read beside them
            for other in root.rglob("*"):
                if other.is_file() and other.suffix not in TASK_SUFFIXES:
                    dest = target / other.relative_to(root)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(other, dest)
        else:
            for helper in root.glob("*.py"):
                shutil.copy2(helper, target / helper.name)
    return LocalTasks(into, names)


def _names(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item


# ------------------------------------------------------------------------------------------------ folding


def fold_results(results: Mapping[str, Any], tasks: Sequence[str]) -> SuiteResult:
    """lm-eval's results dict → a :class:`SuiteResult`: ``task/metric`` entries, components per task, and
    the per-sample records (when lm-eval logged them) as items.

    lm-eval keys metrics as ``"metric,filter"`` (e.g. ``"acc,none"``); standard errors are dropped.
    """
    per_task: Mapping[str, Mapping[str, Any]] = results.get("results", {})
    metrics: dict[str, float] = {}
    components: dict[str, float] = {}
    headline: dict[str, str] = {}
    for task, values in per_task.items():
        primary: dict[str, float] = {}
        for key, value in values.items():
            metric = key.split(",")[0]
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or metric.endswith("_stderr")
                or metric == "sample_len"
            ):
                continue
            metrics[f"{task}/{key}"] = float(value)
            primary.setdefault(metric, float(value))
        for name in PRIMARY_METRICS:
            if name in primary and 0.0 <= primary[name] <= 1.0:
                components[f"lm-eval/{task}"] = primary[name]
                headline[task] = name
                break
    if components:
        metrics["score"] = sum(components.values()) / len(components)
    items = [
        _item(task, sample, headline[task])
        for task, samples in dict(results.get("samples") or {}).items()
        if task in headline
        for sample in samples
    ]
    meta = {
        "category": "general",
        "components": components,
        "headline_metrics": headline,
        "tasks": list(tasks),
        "versions": dict(results.get("versions", {})),
        "n_samples": {k: v for k, v in dict(results.get("n-samples", {})).items()},
    }
    return SuiteResult(SUITE_NAME, metrics, items, meta)


def _item(task: str, sample: Mapping[str, Any], metric: str) -> ItemResult:
    """One lm-eval sample record → an item scored by the task's headline metric."""
    arguments = sample.get("arguments") or []
    context = str(arguments[0][0]) if arguments and isinstance(arguments[0], list | tuple) else ""
    responses = sample.get("filtered_resps") or []
    meta: dict[str, Any] = {"task": task, "doc_id": sample.get("doc_id"), "target": sample.get("target")}
    meta["metrics"] = {
        m: sample[m] for m in sample.get("metrics", []) if isinstance(sample.get(m), int | float)
    }
    is_choice = bool(responses) and all(isinstance(r, list | tuple) and len(r) == 2 for r in responses)
    if is_choice:  # multiple choice: (log-likelihood, is greedy) per choice
        logliks = [float(r[0]) for r in responses]
        choices = [str(a[1]) for a in arguments]
        meta["logliks"] = logliks
        completion = choices[max(range(len(logliks)), key=logliks.__getitem__)] if choices else ""
    else:  # generation: the filtered answer (e.g. the extracted number); the raw text in meta
        completion = str(responses[0]) if responses else ""
        raw = sample.get("resps") or []
        if raw and isinstance(raw[0], list | tuple) and raw[0]:
            meta["generated"] = str(raw[0][0])
    score = float(sample.get(metric, 0.0))
    return ItemResult(
        id=f"{task}/{sample.get('doc_id')}",
        prompt=context,
        completion=completion,
        verdict="correct" if score >= 1.0 else ("partial" if score > 0 else "wrong"),
        score=score,
        reason=f"{metric}={score:g}",
        meta=meta,
    )


# --------------------------------------------------------------------------------------------------- run


def run_lm_eval(
    model_dir: str | Path,
    tasks: Sequence[str],
    *,
    paths: Sequence[str | Path] = (),
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    apply_chat_template: bool = True,
    device: str = "cpu",
    dtype: str = "float32",
    num_fewshot: int | None = None,
) -> SuiteResult:
    """``lm_eval.simple_evaluate`` with lm-eval's ``hf`` model on ``model_dir``, folded into a suite.

    ``tasks``: lm-eval task names; ``paths``: local task files or folders (their tasks run when ``tasks``
    does not name any of them, else only the named ones).
    """
    require_lm_eval()
    if not tasks and not paths:
        raise UsageError("--lm-eval: no task names or task files given")
    import lm_eval
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="skillmerge-lm-eval-") as tmp:
        local = prepare_local_tasks([Path(p) for p in paths], Path(tmp)) if paths else None
        chosen = list(tasks) or (local.names if local else [])
        if not chosen:
            raise UsageError(f"--lm-eval: the task files {', '.join(map(str, paths))} define no task")
        only_local = local is not None and all(name in local.names for name in chosen)
        manager = TaskManager(
            include_path=str(local.include) if local else None, include_defaults=not only_local
        )
        try:
            results = lm_eval.simple_evaluate(
                model="hf",
                model_args={"pretrained": str(model_dir), "dtype": dtype, "device": device},
                tasks=chosen,
                num_fewshot=num_fewshot,
                limit=limit,
                batch_size=batch_size,
                bootstrap_iters=0,  # our own paired bootstrap gives the intervals (skillmerge.report)
                log_samples=True,
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
                apply_chat_template=apply_chat_template,
                task_manager=manager,
            )
        except (KeyError, ValueError, FileNotFoundError) as err:  # unknown task names, missing data
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(f"--lm-eval {','.join(chosen)}: {first}") from None
    if results is None:  # non-zero ranks under distributed launch
        raise UsageError("--lm-eval returned no results (run it in a single process)")
    folded = fold_results(results, chosen)
    folded.meta["lm_eval_version"] = getattr(lm_eval, "__version__", "unknown")
    return folded
