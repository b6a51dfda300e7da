"""Run an experiment: walk its steps in topological order, skipping finished ones, surviving failed ones.

For each step (directory ``RUN_DIR/steps/<id>.<key16>``, see :mod:`skillmerge.experiment.status`):

- ``manifest.json`` present → cache hit, nothing runs (the key covers config and input contents);
- a dependency failed or is blocked → blocked: nothing runs, nothing is written;
- otherwise the step runs into a temporary sibling that is renamed into place with its manifest, so a step
  directory is always complete. An exception writes ``error.json`` (type, message, traceback tail) instead
  and the run goes on with the steps that do not depend on it.

Running the same spec again retries failed steps and continues pending ones. ``RUN_DIR/run.json`` records the
spec name and evaluation limit; a run directory of another spec (or limit) is refused.
"""

from __future__ import annotations

import fnmatch
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from skillmerge.atomic import atomic_dir, atomic_file
from skillmerge.errors import UsageError
from skillmerge.experiment import steps as step_kinds
from skillmerge.experiment.dag import Step, expand, plan_text
from skillmerge.experiment.spec import ExperimentSpec, load_spec
from skillmerge.experiment.status import dir_state, step_dir

Outcome = Literal["cached", "ran", "failed", "blocked", "pending"]
RUN_FILE = "run.json"
TRACEBACK_LINES = 30


@dataclass
class StepOutcome:
    id: str
    kind: str
    outcome: Outcome
    seconds: float = 0.0
    error: str | None = None


@dataclass
class RunSummary:
    """Per-step outcomes in execution order; ``ok`` when nothing failed or was blocked."""

    run_dir: Path
    outcomes: list[StepOutcome] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(o.outcome == outcome for o in self.outcomes)

    def by_id(self) -> dict[str, Outcome]:
        return {o.id: o.outcome for o in self.outcomes}

    @property
    def ok(self) -> bool:
        return not (self.count("failed") or self.count("blocked"))

    def text(self) -> str:
        counts = ", ".join(
            f"{self.count(k)} {k}" for k in ("ran", "cached", "failed", "blocked", "pending") if self.count(k)
        )
        return f"{len(self.outcomes)} steps: {counts or 'none'}"


def run_experiment(
    spec: ExperimentSpec | str | Path,
    run_dir: str | Path,
    *,
    dry_run: bool = False,
    only: str | None = None,
    eval_limit: int | None = None,
    echo: Callable[[str], None] = print,
) -> RunSummary:
    """Run ``spec`` (a validated spec or a YAML path) into ``run_dir``; see the module docstring.

    ``only``: a glob on step ids (or an id prefix) — those steps and what they need run, nothing else.
    ``dry_run`` prints the plan with estimated cost and each step's state, and writes nothing.
    ``eval_limit`` caps the items of every suite (quick runs). Everything is validated before any work.
    """
    if not isinstance(spec, ExperimentSpec):
        spec = load_spec(spec)
    run_dir = Path(run_dir)
    planned = expand(spec)
    selected = _select(planned, only)
    summary = RunSummary(run_dir)
    if dry_run:
        echo(plan_text(selected))
        for step in selected:
            state = dir_state(step_dir(run_dir, step))
            summary.outcomes.append(
                StepOutcome(step.id, step.kind, "cached" if state == "done" else "pending")
            )
        echo(f"dry run: nothing written; {summary.text()}")
        return summary

    _claim(run_dir, spec, eval_limit)
    ctx = step_kinds.StepContext(spec, {s.id: s for s in planned}, run_dir, eval_limit)
    broken: set[str] = set()  # failed or blocked step ids
    for index, step in enumerate(selected, 1):
        outcome = _run_step(step, ctx, broken)
        if outcome.outcome in ("failed", "blocked"):
            broken.add(step.id)
        summary.outcomes.append(outcome)
        line = f"[{index}/{len(selected)}] {outcome.outcome:<7} {step.id} ({outcome.seconds:.1f}s)"
        echo(line + (f": {outcome.error}" if outcome.error else ""))
    echo(summary.text())
    return summary


def _run_step(step: Step, ctx: step_kinds.StepContext, broken: set[str]) -> StepOutcome:
    folder = step_dir(ctx.run_dir, step)
    if dir_state(folder) == "done":
        return StepOutcome(step.id, step.kind, "cached")
    blockers = [d for d in step.deps if d in broken]
    if blockers:
        return StepOutcome(step.id, step.kind, "blocked", error=f"blocked by {blockers[0]}")
    start = time.perf_counter()
    try:
        # overwrite: a failed attempt's directory (error.json only) is replaced once this one completes.
        with atomic_dir(folder, overwrite=True) as tmp:
            result = step_kinds.EXECUTORS[step.kind](step, ctx, tmp)
            seconds = time.perf_counter() - start
            _write_json(tmp / "manifest.json", _manifest(step, result, seconds))
    except Exception as err:  # one failing step must not stop the others
        seconds = time.perf_counter() - start
        _record_error(folder, step, err, seconds)
        return StepOutcome(step.id, step.kind, "failed", seconds, f"{type(err).__name__}: {err}")
    return StepOutcome(step.id, step.kind, "ran", seconds)


def _manifest(step: Step, result: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {
        "id": step.id,
        "kind": step.kind,
        "key": step.key,
        "config": step.config,
        "deps": list(step.deps),
        "inputs": {
            role: {"path": ref.path, "fingerprint": ref.fingerprint} for role, ref in step.inputs.items()
        },
        "seconds": seconds,
        "result": result,
    }


def _record_error(folder: Path, step: Step, err: Exception, seconds: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tail = traceback.format_exception(err)
    lines = "".join(tail).splitlines()[-TRACEBACK_LINES:]
    error = {
        "id": step.id,
        "key": step.key,
        "type": type(err).__name__,
        "message": str(err),
        "traceback": lines,
        "seconds": seconds,
    }
    with atomic_file(folder / "error.json", overwrite=True) as handle:
        handle.write(json.dumps(error, indent=2, default=str) + "\n")


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")


def _select(steps: list[Step], only: str | None) -> list[Step]:
    """Steps matching ``only`` (glob, or id prefix without wildcards) and all their ancestors, in order."""
    if only is None:
        return steps
    by_id = {s.id: s for s in steps}
    wildcard = any(c in only for c in "*?[")
    wanted = [s.id for s in steps if (fnmatch.fnmatchcase(s.id, only) if wildcard else s.id.startswith(only))]
    if not wanted:
        raise UsageError(f"--only {only!r} matches no step (see --dry-run for the step ids)")
    needed: set[str] = set()
    stack = list(wanted)
    while stack:
        current = stack.pop()
        if current not in needed:
            needed.add(current)
            stack.extend(by_id[current].deps)
    return [s for s in steps if s.id in needed]


def _claim(run_dir: Path, spec: ExperimentSpec, eval_limit: int | None) -> None:
    """Write ``run.json`` for a new run; refuse a run directory made by another spec or eval limit."""
    record = {"spec": spec.name, "eval_limit": eval_limit}
    path = run_dir / RUN_FILE
    if path.is_file():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise UsageError(f"{path}: not valid JSON; is this a skillmerge run directory?") from None
        if existing != record:
            raise UsageError(
                f"{run_dir}: holds a run of {existing} but this is {record}; "
                "choose another --out or remove that directory"
            )
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(
            f"{run_dir}: exists and is not a skillmerge run directory (no {RUN_FILE}); choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        handle.write(json.dumps(record, indent=2) + "\n")
