"""Score precomputed completions with no model: ``skillmerge eval-code --problems P.jsonl --samples S.jsonl``.

Samples are JSONL, one ``{"task_id", "completion"}`` per line, several lines per task allowed. Every
completion runs in the sandbox; the report holds each task's results and pass@k over the tasks sampled.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from skillmerge.errors import DataError, UsageError
from skillmerge.evaluate.code_problems import CodeProblem, load_code_problems, program_for
from skillmerge.evaluate.passk import mean_pass_at_k
from skillmerge.evaluate.sandbox import Sandbox, SandboxLimits


@dataclass(frozen=True)
class CodeSample:
    task_id: str
    completion: str
    line: int


def read_samples(path: str | Path) -> list[CodeSample]:
    """Samples from a JSONL file; the file is read as bytes so a line that is not UTF-8 is named exactly."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UsageError(f"{path}: cannot read samples ({err.strerror or err})") from None
    samples: list[CodeSample] = []
    for line_no, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(
                path, line_no, f"not valid UTF-8 (byte {chunk[err.start]:#04x} at column {err.start + 1})"
            ) from None
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(path, line_no, f"malformed JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("task_id"), str):
            raise DataError(path, line_no, "expected an object with a text 'task_id'")
        completion = obj.get("completion")
        if not isinstance(completion, str):
            raise DataError(path, line_no, f"task {obj['task_id']}: 'completion' must be text")
        try:  # JSON escapes can smuggle lone surrogates (\udc80) that no UTF-8 file could hold
            completion.encode("utf-8")
        except UnicodeEncodeError as err:
            raise DataError(path, line_no, f"completion is not valid UTF-8 ({err.reason})") from None
        samples.append(CodeSample(obj["task_id"], completion, line_no))
    if not samples:
        raise DataError(path, None, "no samples in this file")
    return samples


def score_samples(
    problems: Sequence[CodeProblem],
    samples: Sequence[CodeSample],
    ks: Sequence[int] = (1,),
    *,
    sandbox: Sandbox | None = None,
    workers: int | None = None,
    samples_path: str | Path = "samples",
) -> dict[str, Any]:
    """Run every sample against its task's tests; per-task results and pass@k (mean over sampled tasks)."""
    by_id = {p.task_id: p for p in problems}
    for sample in samples:
        if sample.task_id not in by_id:
            raise DataError(
                samples_path, sample.line, f"unknown task {sample.task_id!r} (not in the problems)"
            )
    per_task: dict[str, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        per_task[sample.task_id].append(i)
    ks = sorted(set(ks))
    if not ks or ks[0] < 1:
        raise UsageError(f"pass@k: k must be >= 1 (got {ks})")
    for task, idx in per_task.items():
        if len(idx) < ks[-1]:
            raise UsageError(f"task {task}: pass@{ks[-1]} needs at least {ks[-1]} samples, got n={len(idx)}")
    sandbox = sandbox or Sandbox()
    results = sandbox.run_many(
        [program_for(by_id[s.task_id], s.completion) for s in samples], workers=workers
    )
    tasks = []
    for task, idx in per_task.items():
        tasks.append(
            {
                "task_id": task,
                "n": len(idx),
                "correct": sum(results[i].passed for i in idx),
                "results": [{"line": samples[i].line, **results[i].to_dict()} for i in idx],
            }
        )
    outcomes = {t["task_id"]: [r["passed"] for r in t["results"]] for t in tasks}
    return {
        "n_tasks": len(tasks),
        "n_samples": len(samples),
        **mean_pass_at_k(outcomes, ks),
        "sandbox": sandbox.describe(),
        "tasks": tasks,
    }


def eval_code_command(
    samples: Annotated[
        Path, typer.Option("--samples", help="JSONL of {task_id, completion}, several per task.")
    ],
    problems: Annotated[
        Path | None,
        typer.Option("--problems", help="Problems JSONL(.gz) in HumanEval format (default: HumanEval)."),
    ] = None,
    k: Annotated[list[int] | None, typer.Option("--k", "-k", help="pass@k to report (repeatable).")] = None,
    timeout: Annotated[float, typer.Option(help="Wall-time limit per sample, seconds.")] = 10.0,
    workers: Annotated[int | None, typer.Option(help="Samples run at once (default: CPU count).")] = None,
) -> None:
    """Score precomputed completions in the sandbox; print per-task results and pass@k as JSON."""
    report = score_samples(
        load_code_problems(problems),
        read_samples(samples),
        k or [1],
        sandbox=Sandbox(SandboxLimits(timeout_s=timeout)),
        workers=workers,
        samples_path=samples,
    )
    report = {
        "problems": str(problems) if problems else "humaneval (bundled)",
        "samples": str(samples),
        **report,
    }
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
