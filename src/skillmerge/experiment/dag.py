"""An experiment spec as a DAG of steps (data, train, merge, eval) with content-addressed cache keys.

:func:`expand` asks each planned arm (:mod:`skillmerge.experiment.arms`: θ_G's, then the spec's ``methods``
in registration order) to add its steps to one :class:`~skillmerge.experiment.planner.Planner`, which keeps
steps several arms share (θ_G, data subsets, θ_D) once. Steps come out in topological order (every
dependency before its user); keys are described in :mod:`skillmerge.experiment.step`.
"""

from __future__ import annotations

from skillmerge.experiment.estimate import add_estimates
from skillmerge.experiment.planner import Planner
from skillmerge.experiment.spec import ExperimentSpec
from skillmerge.experiment.step import Step


def expand(spec: ExperimentSpec, eval_limit: int | None = None) -> list[Step]:
    """All steps of ``spec`` in topological order; inputs are fingerprinted (missing ones refused).

    ``eval_limit`` (the ``--eval-limit`` override, else the spec's ``eval.limit``) goes into every eval step's
    config, so runs with different limits have different keys and can share a run directory.
    """
    planner = Planner(spec, eval_limit if eval_limit is not None else spec.eval_limit)
    for arm in spec.arms():
        planner.arm = arm.name
        arm.plan(planner)
    steps = list(planner.steps.values())
    add_estimates(spec, steps)
    return steps
