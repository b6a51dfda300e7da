"""The local parallel executor: merge and eval steps in spawned worker processes, training here.

Spawned, so no CUDA or thread state is inherited; each worker takes an equal share of the cores. Data and
train steps stay in the driving process, one at a time (training takes every core, or the accelerate
launcher's processes).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager

from skillmerge.experiment import steps as step_kinds
from skillmerge.experiment.step import Step
from skillmerge.experiment.step_run import StepOutcome, run_step

PARALLEL_KINDS = ("merge", "eval")  # steps a worker process may run


class ProcessPool:
    """A :class:`~skillmerge.experiment.schedule.StepPool` over ``workers`` spawned processes."""

    def __init__(self, executor: ProcessPoolExecutor, ctx: step_kinds.StepContext) -> None:
        self._executor = executor
        self._ctx = ctx

    def takes(self, step: Step) -> bool:
        return step.kind in PARALLEL_KINDS

    def submit(self, step: Step) -> Future[StepOutcome]:
        return self._executor.submit(run_step, step, self._ctx)


@contextmanager
def process_pool(ctx: step_kinds.StepContext, workers: int) -> Iterator[ProcessPool]:
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(threads,)
    ) as executor:
        yield ProcessPool(executor, ctx)


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # workers share the cores instead of each taking all of them
