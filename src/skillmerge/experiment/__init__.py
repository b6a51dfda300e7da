"""Experiments: a spec (YAML) expanded into a DAG of data, train, merge and eval steps with cache keys.

``load_spec(path)`` validates; ``expand(spec)`` gives the steps in topological order with their keys and cost
estimates; ``plan_text(steps)`` is the ``--dry-run`` plan; ``run_status(run_dir, steps)`` says what is done.
The steps come from the arms (:mod:`skillmerge.experiment.arms`), one file each.

Importing the package is cheap (the CLI imports its command module to build ``skillmerge --help``); the
names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skillmerge.experiment.dag import expand
    from skillmerge.experiment.estimate import plan_text
    from skillmerge.experiment.select import heuristic_omega, pick_omega
    from skillmerge.experiment.spec import ExperimentSpec, load_spec
    from skillmerge.experiment.status import run_status
    from skillmerge.experiment.step import Step

_LAZY = {
    "ExperimentSpec": "skillmerge.experiment.spec",
    "Step": "skillmerge.experiment.step",
    "expand": "skillmerge.experiment.dag",
    "heuristic_omega": "skillmerge.experiment.select",
    "load_spec": "skillmerge.experiment.spec",
    "pick_omega": "skillmerge.experiment.select",
    "plan_text": "skillmerge.experiment.estimate",
    "run_status": "skillmerge.experiment.status",
}

__all__ = [
    "ExperimentSpec",
    "Step",
    "expand",
    "heuristic_omega",
    "load_spec",
    "pick_omega",
    "plan_text",
    "run_status",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'skillmerge.experiment' has no attribute {name!r}")
