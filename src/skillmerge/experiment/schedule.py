"""The ready loop every parallel executor shares: steps go out as soon as each dependency has an outcome.

A :class:`StepPool` says which steps it takes and runs them (worker processes, Ray tasks); the others run
in this process. Cached and blocked steps are decided here at once, without a worker. A step the pool takes
goes out when ready; a step that runs here starts after the pool has been given everything ready, so the
workers keep busy while it runs. The outcomes are the same as a sequential walk's, in completion order.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Protocol

from skillmerge.experiment import steps as step_kinds
from skillmerge.experiment.status import dir_state, step_dir
from skillmerge.experiment.step import Step
from skillmerge.experiment.step_run import Outcome, StepOutcome, record_error, run_step


class StepPool(Protocol):
    def takes(self, step: Step) -> bool:
        """Whether this pool runs ``step`` (else it runs in the driving process)."""
        ...

    def submit(self, step: Step) -> Future[StepOutcome]:
        """Start ``step`` (its dependencies are finished); the future holds its outcome."""
        ...


def run_ready(
    selected: list[Step],
    ctx: step_kinds.StepContext,
    pool: StepPool,
    record: Callable[[StepOutcome], None],
) -> None:
    """Run ``selected`` (topologically ordered) through ``pool``; ``record`` gets each outcome once.

    A pool's future that raises (its worker died for good, the task could not be scheduled) is recorded as
    the step's failure, with ``error.json`` written as for an exception inside the step.
    """
    waiting = list(selected)
    finished: dict[str, Outcome] = {}
    running: dict[Future[StepOutcome], Step] = {}

    def finish(outcome: StepOutcome) -> None:
        finished[outcome.id] = outcome.outcome
        record(outcome)

    while waiting or running:
        here: Step | None = None
        for step in list(waiting):
            if any(dep not in finished for dep in step.deps):
                continue
            broken = {dep for dep in step.deps if finished[dep] in ("failed", "blocked")}
            if broken or dir_state(step_dir(ctx.run_dir, step)) == "done":
                waiting.remove(step)
                finish(run_step(step, ctx, broken))  # blocked or cached: nothing runs
            elif pool.takes(step):
                waiting.remove(step)
                running[pool.submit(step)] = step
            elif here is None:
                here = step
        if here is not None:
            waiting.remove(here)
            finish(run_step(here, ctx))
        elif running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                step = running.pop(future)
                try:
                    finish(future.result())
                except Exception as err:  # the worker is gone; a step's own errors come back as outcomes
                    record_error(step_dir(ctx.run_dir, step), step, err, 0.0)
                    finish(StepOutcome(step.id, step.kind, "failed", error=f"{type(err).__name__}: {err}"))
        elif waiting:
            raise ValueError(f"step {waiting[0].id} waits on a step outside the plan")  # a selection bug
