"""Run an experiment: walk its steps in topological order, skipping finished ones, surviving failed ones.

For each step (directory ``RUN_DIR/steps/<id>.<key16>``, see :mod:`skillmerge.experiment.status`):

- ``manifest.json`` present → cache hit, nothing runs (the key covers config and input contents);
- a dependency failed or is blocked → blocked: nothing runs, nothing is written;
- otherwise the step runs into a temporary sibling that is renamed into place with its manifest, so a step
  directory is always complete. An exception writes ``error.json`` (type, message, traceback tail) instead
  and the run goes on with the steps that do not depend on it.

Running the same spec again retries failed steps and continues pending ones. ``RUN_DIR/run.json`` records the
spec name and the latest plan (step id → directory); a run directory of another spec is refused. The
evaluation limit is part of every eval step's key, so runs with different limits share a directory without
mixing results (the report reads the latest plan's steps).

With ``workers > 1`` merge and eval steps whose dependencies are all finished run concurrently in spawned
worker processes (:mod:`skillmerge.experiment.process_pool`), and so do train steps that train on the CPU
in-process; data steps, and training on a GPU or through the accelerate launcher, stay in this process, one
at a time. With ``executor="ray"`` every ready step is a Ray task on a cluster
(:mod:`skillmerge.experiment.ray_pool`) whose nodes all see the run directory. A step's outcome, directory,
manifest and error record are the same whichever process or node ran it
(:mod:`skillmerge.experiment.step_run`).
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from skillmerge.atomic import atomic_file
from skillmerge.errors import UsageError
from skillmerge.experiment import steps as step_kinds
from skillmerge.experiment.dag import expand
from skillmerge.experiment.estimate import plan_text
from skillmerge.experiment.spec import ExperimentSpec, load_spec
from skillmerge.experiment.status import STEPS_DIR, dir_state, step_dir
from skillmerge.experiment.step import Step
from skillmerge.experiment.step_run import Outcome, StepOutcome, run_step

__all__ = ["EXECUTORS", "RunSummary", "StepOutcome", "run_experiment"]

RUN_FILE = "run.json"
EXECUTORS = ("local", "ray")


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
    executor: str = "local",
    address: str | None = None,
    echo: Callable[[str], None] = print,
) -> RunSummary:
    """Run ``spec`` (a validated spec or a YAML path) into ``run_dir``; see the module docstring.

    ``only``: a glob on step ids (or an id prefix) — those steps and what they need run, nothing else.
    ``dry_run`` prints the plan with estimated cost and each step's state, and writes nothing.
    ``eval_limit`` caps the items of every suite (overrides the spec's ``eval.limit``; in the eval keys).
    ``workers``: local processes for merge, eval and CPU train steps. ``executor``: ``local`` or ``ray``;
    ``address`` is the Ray cluster's (default: ``RAY_ADDRESS``, else a Ray instance started on this machine).
    Everything is validated before any work.
    """
    if workers < 1:
        raise UsageError(f"--workers must be ≥ 1, got {workers}")
    if executor not in EXECUTORS:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if address is not None and executor != "ray":
        raise UsageError("--address names a Ray cluster; it needs --executor ray")
    if workers > 1 and executor == "ray":
        raise UsageError("--workers is for the local executor; Ray sizes its workers from the cluster")
    if not isinstance(spec, ExperimentSpec):
        spec = load_spec(spec)
    # Absolute: Ray workers do not start in this directory.
    run_dir = Path(run_dir).resolve() if executor == "ray" else Path(run_dir)
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

    if executor == "ray":
        from skillmerge.experiment.ray_pool import require_ray

        require_ray()  # before anything is written
    _claim(run_dir, spec)
    _record_plan(run_dir, spec, planned)
    _remove_leftovers(run_dir)
    ctx = step_kinds.StepContext(spec, {s.id: s for s in planned}, run_dir)

    def record(outcome: StepOutcome) -> None:
        summary.outcomes.append(outcome)
        line = f"[{len(summary.outcomes)}/{len(selected)}] {outcome.outcome:<7} {outcome.id}"
        line += f" ({outcome.seconds:.1f}s)"
        echo(line + (f": {outcome.error}" if outcome.error else ""))

    if executor == "ray":
        from skillmerge.experiment.ray_pool import ray_pool
        from skillmerge.experiment.schedule import run_ready

        with ray_pool(ctx, address, echo) as pool:
            run_ready(selected, ctx, pool, record)
    elif workers > 1:
        from skillmerge.experiment.process_pool import process_pool
        from skillmerge.experiment.schedule import run_ready

        with process_pool(ctx, workers) as pool:
            run_ready(selected, ctx, pool, record)
    else:
        broken: set[str] = set()  # failed or blocked step ids
        for step in selected:
            outcome = run_step(step, ctx, broken)
            if outcome.outcome in ("failed", "blocked"):
                broken.add(step.id)
            record(outcome)
    echo(summary.text())
    return summary


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


def _record_plan(run_dir: Path, spec: ExperimentSpec, planned: list[Step]) -> None:
    """``run.json``'s ``plan``: every step id of this run's plan with its directory name.

    A spec edited between runs keeps its step ids but changes their keys; the directories of the earlier
    keys stay as a cache, and the report reads only the ones the latest plan names
    (:func:`skillmerge.report.results.collect`).
    """
    path = run_dir / RUN_FILE
    record = json.loads(path.read_text(encoding="utf-8"))  # _claim wrote or checked it
    record.update(spec=spec.name, plan={step.id: step.dirname for step in planned})
    with atomic_file(run_dir / RUN_FILE, overwrite=True) as handle:
        handle.write(json.dumps(record, indent=2) + "\n")


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
