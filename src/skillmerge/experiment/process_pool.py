"""The local parallel executor: ``workers`` steps at once in spawned worker processes, each on an equal share
of the cores.

Spawned, so no CUDA or thread state is inherited. Merge and eval steps always go to the workers. Training
steps go too when they train here on the CPU (no accelerate launcher, no GPU): two 135M trainings on one
thread each do ~1.2× the work per second of one training on two threads on a 2-core machine (small matmuls
and the optimizer's memory passes scale less than linearly with threads; `docs/scale.md`). A training that
runs on a GPU or through the accelerate launcher stays in the driving process, one at a time, so two never
share a device. Data steps stay in the driving process (they are quick).
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

PARALLEL_KINDS = ("merge", "eval")  # steps a worker process always runs


class ProcessPool:
    """A :class:`~skillmerge.experiment.schedule.StepPool` over ``workers`` spawned processes."""

    def __init__(self, executor: ProcessPoolExecutor, ctx: step_kinds.StepContext) -> None:
        self._executor = executor
        self._ctx = ctx
        self._trains = cpu_training(ctx)

    def takes(self, step: Step) -> bool:
        return step.kind in PARALLEL_KINDS or (step.kind == "train" and self._trains)

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


def cpu_training(ctx: step_kinds.StepContext) -> bool:
    """Whether the spec's training steps run in-process on the CPU (no accelerate launcher, no GPU here)."""
    import torch

    return ctx.spec.launcher.accelerate_config is None and not torch.cuda.is_available()


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # workers share the cores instead of each taking all of them
