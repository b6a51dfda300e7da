"""Experiments: a spec (YAML) expanded into a DAG of data, train, merge and eval steps with cache keys.

``load_spec(path)`` validates; ``expand(spec)`` gives the steps in topological order with their keys and cost
estimates; ``plan_text(steps)`` is the ``--dry-run`` plan; ``run_status(run_dir, steps)`` says what is done.
"""

from skillmerge.experiment.dag import expand
from skillmerge.experiment.estimate import plan_text
from skillmerge.experiment.select import heuristic_omega, pick_omega
from skillmerge.experiment.spec import ExperimentSpec, load_spec
from skillmerge.experiment.status import run_status
from skillmerge.experiment.step import Step

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
