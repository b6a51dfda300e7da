"""Run one step into its directory, atomically: the unit every executor (this process, a worker process, a
Ray task) calls, so a step's outcome, directory, manifest and error record do not depend on where it ran.

- ``manifest.json`` present → ``cached``, nothing runs;
- a dependency in ``broken`` (failed or blocked) → ``blocked``, nothing is written;
- otherwise the step is built in a temporary sibling renamed into place with its manifest; an exception
  writes ``error.json`` (type, message, traceback tail) instead and returns ``failed``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from skillmerge.atomic import atomic_dir, atomic_file
from skillmerge.experiment import steps as step_kinds
from skillmerge.experiment.status import dir_state, step_dir
from skillmerge.experiment.step import Step

Outcome = Literal["cached", "ran", "failed", "blocked", "pending"]
TRACEBACK_LINES = 30


@dataclass
class StepOutcome:
    id: str
    kind: str
    outcome: Outcome
    seconds: float = 0.0
    error: str | None = None


def run_step(
    step: Step, ctx: step_kinds.StepContext, broken: set[str] | frozenset[str] = frozenset()
) -> StepOutcome:
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
            write_json(tmp / "manifest.json", manifest(step, result, seconds))
    except Exception as err:  # one failing step must not stop the others
        seconds = time.perf_counter() - start
        record_error(folder, step, err, seconds)
        return StepOutcome(step.id, step.kind, "failed", seconds, f"{type(err).__name__}: {err}")
    return StepOutcome(step.id, step.kind, "ran", seconds)


def manifest(step: Step, result: dict[str, Any], seconds: float) -> dict[str, Any]:
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
        "worker": {"host": socket.gethostname(), "pid": os.getpid()},  # which process made it (not keyed)
        "result": result,
    }


def record_error(folder: Path, step: Step, err: BaseException, seconds: float) -> None:
    """``error.json`` in the step's directory (replacing an earlier one): type, message, traceback tail."""
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


def remove_step_temporaries(folder: Path) -> list[Path]:
    """Delete every temporary sibling of one step's directory (``.NAME.tmp-*``), from any host or process.

    Only for the one live attempt at a step (a retry starts after the previous attempt's process is gone): a
    worker killed on another node leaves a sibling that :mod:`skillmerge.atomic` cannot prove dead.
    """
    removed = []
    prefix = f".{folder.name}.tmp-"
    if folder.parent.is_dir():
        for sibling in folder.parent.iterdir():
            if sibling.name.startswith(prefix):
                shutil.rmtree(sibling, ignore_errors=True)
                removed.append(sibling)
    return removed


def write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")
