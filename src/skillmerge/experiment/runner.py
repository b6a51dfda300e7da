"""Run an experiment: walk its steps in topological order, skipping finished ones, surviving failed ones.

For each step (directory ``RUN_DIR/steps/<id>.<key16>``, see :mod:`skillmerge.experiment.status`):

- ``manifest.json`` present → cache hit, nothing runs (the key covers config and input contents);
- a dependency failed or is blocked → blocked: nothing runs, nothing is written;
- otherwise the step runs into a temporary sibling that is renamed into place with its manifest, so a step
  directory is always complete. An exception writes ``error.json`` (type, message, traceback tail) instead
  and the run goes on with the steps that do not depend on it.

Running the same spec again retries failed steps and continues pending ones. ``RUN_DIR/run.json`` records the
spec name; a run directory of another spec is refused. The evaluation limit is part of every eval step's key,
so runs with different limits share a directory without mixing results.

With ``workers > 1`` merge and eval steps whose dependencies are all finished run concurrently in worker
processes (spawned, so no CUDA or thread state is inherited); data and train steps stay in this process, one
at a time (training takes every core, or the accelerate launcher's processes). A step's outcome, directory,
manifest and error record are the same whichever process ran it.
"""

from __future__ import annotations

import fnmatch
import json
import multiprocessing
import os
import shutil
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from skillmerge.atomic import atomic_dir, atomic_file
from skillmerge.errors import UsageError
from skillmerge.experiment import steps as step_kinds
from skillmerge.experiment.dag import expand
from skillmerge.experiment.estimate import plan_text
from skillmerge.experiment.spec import ExperimentSpec, load_spec
from skillmerge.experiment.status import STEPS_DIR, dir_state, step_dir
from skillmerge.experiment.step import Step

Outcome = Literal["cached", "ran", "failed", "blocked", "pending"]
RUN_FILE = "run.json"
TRACEBACK_LINES = 30
PARALLEL_KINDS = ("merge", "eval")  # steps a worker process may run (training stays in the main process)


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
    workers: int = 1,
    echo: Callable[[str], None] = print,
) -> RunSummary:
    """Run ``spec`` (a validated spec or a YAML path) into ``run_dir``; see the module docstring.

    ``only``: a glob on step ids (or an id prefix) — those steps and what they need run, nothing else.
    ``dry_run`` prints the plan with estimated cost and each step's state, and writes nothing.
    ``eval_limit`` caps the items of every suite (overrides the spec's ``eval.limit``; in the eval keys).
    ``workers``: processes for merge and eval steps. Everything is validated before any work.
    """
    if workers < 1:
        raise UsageError(f"--workers must be ≥ 1, got {workers}")
    if not isinstance(spec, ExperimentSpec):
        spec = load_spec(spec)
    run_dir = Path(run_dir)
    planned = expand(spec, eval_limit)
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

    _claim(run_dir, spec)
    _remove_leftovers(run_dir)
    ctx = step_kinds.StepContext(spec, {s.id: s for s in planned}, run_dir)

    def record(outcome: StepOutcome) -> None:
        summary.outcomes.append(outcome)
        line = f"[{len(summary.outcomes)}/{len(selected)}] {outcome.outcome:<7} {outcome.id}"
        line += f" ({outcome.seconds:.1f}s)"
        echo(line + (f": {outcome.error}" if outcome.error else ""))

    if workers == 1:
        broken: set[str] = set()  # failed or blocked step ids
        for step in selected:
            outcome = _run_step(step, ctx, broken)
            if outcome.outcome in ("failed", "blocked"):
                broken.add(step.id)
            record(outcome)
    else:
        _run_parallel(selected, ctx, workers, record)
    echo(summary.text())
    return summary


def _run_parallel(
    selected: list[Step], ctx: step_kinds.StepContext, workers: int, record: Callable[[StepOutcome], None]
) -> None:
    """Run ready merge/eval steps in a process pool, everything else here; same outcomes as sequentially.

    A step is ready when each dependency has an outcome. Cached and blocked steps are decided here at once;
    a ready merge/eval step goes to the pool; a ready data/train step runs here (one per pass, after the
    pool has been given everything ready, so the workers keep busy while it trains).
    """
    waiting = list(selected)
    finished: dict[str, Outcome] = {}
    running: dict[Future[StepOutcome], Step] = {}

    def finish(outcome: StepOutcome) -> None:
        finished[outcome.id] = outcome.outcome
        record(outcome)

    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(threads,)
    ) as pool:
        while waiting or running:
            local: Step | None = None
            for step in list(waiting):
                if any(dep not in finished for dep in step.deps):
                    continue
                broken = {dep for dep in step.deps if finished[dep] in ("failed", "blocked")}
                if broken or dir_state(step_dir(ctx.run_dir, step)) == "done":
                    waiting.remove(step)
                    finish(_run_step(step, ctx, broken))  # blocked or cached: nothing runs
                elif step.kind in PARALLEL_KINDS:
                    waiting.remove(step)
                    running[pool.submit(_run_in_worker, step, ctx)] = step
                elif local is None:
                    local = step
            if local is not None:
                waiting.remove(local)
                finish(_run_step(local, ctx, set()))
            elif running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    step = running.pop(future)
                    try:
                        finish(future.result())
                    except Exception as err:  # the worker process died; the step's own errors are recorded
                        finish(
                            StepOutcome(step.id, step.kind, "failed", error=f"{type(err).__name__}: {err}")
                        )
            elif waiting:
                raise ValueError(f"step {waiting[0].id} waits on a step outside the plan")  # a bug in _select


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # workers share the cores instead of each taking all of them


def _run_in_worker(step: Step, ctx: step_kinds.StepContext) -> StepOutcome:
    return _run_step(step, ctx, set())


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
            result = step_kinds.execute(step, ctx, tmp)
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
        "config": step.config.record(),
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


def _remove_leftovers(run_dir: Path) -> None:
    """Delete temporary step directories a killed run left behind (``steps/.ID.tmp-*``, ``.ID.old-*``).

    A step is built in a hidden sibling and renamed into place when complete, so these never hold a finished
    step. One run at a time per run directory: a second concurrent run would lose its in-flight steps.
    """
    steps = run_dir / STEPS_DIR
    if not steps.is_dir():
        return
    for leftover in steps.iterdir():
        if leftover.name.startswith(".") and (".tmp-" in leftover.name or ".old-" in leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)


def _claim(run_dir: Path, spec: ExperimentSpec) -> None:
    """Write ``run.json`` for a new run; refuse a run directory made by another spec."""
    record = {"spec": spec.name}
    path = run_dir / RUN_FILE
    if path.is_file():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise UsageError(f"{path}: not valid JSON; is this a skillmerge run directory?") from None
        if not isinstance(existing, dict) or existing.get("spec") != record["spec"]:
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
