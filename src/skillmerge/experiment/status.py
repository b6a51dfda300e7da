"""Where a run stands: each step directory is done (``manifest.json``), failed (``error.json``) or pending.

A step's directory is ``RUN_DIR/steps/<Step.dirname>`` (id and key prefix). Given the planned steps, a step
with no directory is pending; without a plan, only the directories present are reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from skillmerge.errors import UsageError
from skillmerge.experiment.step import Step

State = Literal["done", "failed", "pending"]
STEPS_DIR = "steps"


def step_dir(run_dir: str | Path, step: Step) -> Path:
    return Path(run_dir) / STEPS_DIR / step.dirname


def dir_state(path: Path) -> State:
    """``done`` if ``manifest.json`` is there, else ``failed`` if ``error.json`` is, else ``pending``."""
    if (path / "manifest.json").is_file():
        return "done"
    if (path / "error.json").is_file():
        return "failed"
    return "pending"


def run_status(run_dir: str | Path, steps: Iterable[Step] | None = None) -> dict[str, State]:
    """``{step id or directory name: state}``: every planned step when ``steps`` is given, else every dir."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: run directory does not exist")
    if steps is not None:
        return {step.id: dir_state(step_dir(run_dir, step)) for step in steps}
    root = run_dir / STEPS_DIR
    found = (
        sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if root.is_dir()
        else []
    )
    return {path.name: dir_state(path) for path in found}


def summarize(states: dict[str, State]) -> str:
    """``N done, M failed, K pending`` plus the failed ids, one per line."""
    counts = {s: sum(v == s for v in states.values()) for s in ("done", "failed", "pending")}
    lines = [", ".join(f"{n} {s}" for s, n in counts.items())]
    lines += [f"failed: {name}" for name, state in states.items() if state == "failed"]
    return "\n".join(lines)
