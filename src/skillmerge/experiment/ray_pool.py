"""The Ray executor: every ready step is a Ray task on a cluster whose nodes all see the run directory.

``skillmerge run SPEC --executor ray [--address ADDR]``. Ray (the optional extra ``skillmerge[ray]``) is
imported only here, only when chosen. Steps, keys, step directories and the report are the local
executor's: each task calls :func:`~skillmerge.experiment.step_run.run_step`, so a step is built in a
temporary sibling and renamed into place, whichever node ran it. The run directory must be one path that
every node reads and writes (a shared filesystem: NFS, Lustre, a mounted bucket with POSIX renames), and so
must every input the spec names.

Resources, by step kind (:func:`step_resources`), on the cluster as it is when the run starts:

- **train**: on a cluster with GPUs, one GPU per training process (the launcher's ``num_processes``, read
  from its accelerate config when the spec does not set it; one for in-process training) and as many CPUs;
  on a CPU cluster, every CPU of the largest node, as a local run gives training every core;
- **merge**: one CPU and the memory the merge plan predicts (read from the inputs' headers when the step
  becomes ready) plus :data:`WORKER_BYTES` for the worker process itself;
- **eval**: one CPU, and one GPU on a cluster with GPUs (the evaluation backends use CUDA when they see it);
- **data**: one CPU.

A task sets torch's thread count to its CPUs. A request no node can hold fails its step at once with the
reason (Ray would otherwise wait for such a node forever).

Faults. A worker that dies mid-step (killed, out of memory, its node lost) is retried by Ray up to
:data:`RETRIES` times; the retry first deletes the step's temporary siblings left by the dead attempt, from
any host (Ray starts a retry only once the previous attempt's worker is gone). A step that raises is
recorded once (``error.json``) and blocks only its dependents, exactly as locally: exceptions are outcomes,
never Ray retries. If the driver dies, Ray ends its tasks; running the same command again continues from
the finished steps.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillmerge.errors import UsageError
from skillmerge.experiment import steps as step_kinds
from skillmerge.experiment.status import step_dir
from skillmerge.experiment.step import Step
from skillmerge.experiment.step_run import StepOutcome, remove_step_temporaries, run_step

RETRIES = 3  # Ray's retries of a step whose worker died
WORKER_BYTES = 1 << 30  # a worker's own memory (Python, torch, a tokenizer) beside a merge's working memory
FORWARDED_ENV_PREFIXES = ("HF_", "TRANSFORMERS_", "TOKENIZERS_", "SKILLMERGE_", "OMP_", "MKL_")
RAY_MISSING = "--executor ray needs Ray, which is not installed (pip install 'skillmerge[ray]')"


def require_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        raise UsageError(RAY_MISSING)


@dataclass(frozen=True)
class Cluster:
    """The alive nodes' total resources (``CPU``, ``GPU``, ``memory`` in bytes), one dict per node."""

    nodes: tuple[dict[str, float], ...]

    @property
    def has_gpus(self) -> bool:
        return any(node.get("GPU", 0) > 0 for node in self.nodes)

    @property
    def largest_cpus(self) -> int:
        return int(max((node.get("CPU", 0) for node in self.nodes), default=0))

    def text(self) -> str:
        cpus = sum(node.get("CPU", 0) for node in self.nodes)
        gpus = sum(node.get("GPU", 0) for node in self.nodes)
        return f"{len(self.nodes)} node(s), {cpus:g} CPUs, {gpus:g} GPUs"

    def infeasible(self, request: dict[str, float]) -> str | None:
        """Why no single node can hold ``request`` (Ray task options), or ``None`` when one can."""
        wanted = {
            "CPU": request.get("num_cpus", 0),
            "GPU": request.get("num_gpus", 0),
            "memory": request.get("memory", 0),
        }
        for node in self.nodes:
            if all(node.get(name, 0) >= amount for name, amount in wanted.items()):
                return None
        needs = ", ".join(_amount(name, amount) for name, amount in wanted.items() if amount)
        largest = {name: max((n.get(name, 0) for n in self.nodes), default=0) for name in wanted}
        has = ", ".join(_amount(name, amount) for name, amount in largest.items())
        return f"needs {needs} on one node, but the cluster's largest offers {has}"


def _amount(name: str, amount: float) -> str:
    return f"{amount / 2**30:.1f} GiB memory" if name == "memory" else f"{amount:g} {name}"


def step_resources(step: Step, ctx: step_kinds.StepContext, cluster: Cluster) -> dict[str, float]:
    """Ray task options (``num_cpus``, ``num_gpus``, ``memory``) for ``step``; see the module docstring."""
    if step.kind == "train":
        processes = training_processes(ctx)
        if cluster.has_gpus:
            return {"num_cpus": processes, "num_gpus": processes}
        return {"num_cpus": max(cluster.largest_cpus, processes), "num_gpus": 0}
    if step.kind == "merge":
        return {"num_cpus": 1, "num_gpus": 0, "memory": step_kinds.merge_peak_bytes(step, ctx) + WORKER_BYTES}
    if step.kind == "eval":
        return {"num_cpus": 1, "num_gpus": 1 if cluster.has_gpus else 0}
    return {"num_cpus": 1, "num_gpus": 0}


def training_processes(ctx: step_kinds.StepContext) -> int:
    """Processes of one training step: the launcher's ``num_processes``, its accelerate config's, or 1."""
    launcher = ctx.spec.launcher
    if launcher.accelerate_config is None:
        return 1
    if launcher.num_processes is not None:
        return launcher.num_processes
    import yaml

    path = Path(launcher.accelerate_config)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UsageError(f"{path}: cannot read the accelerate config ({err})") from None
    processes = config.get("num_processes", 1) if isinstance(config, dict) else 1
    if not isinstance(processes, int) or processes < 1:
        raise UsageError(f"{path}: num_processes must be a positive integer, got {processes!r}")
    return processes


def run_as_task(step: Step, ctx: step_kinds.StepContext, threads: int) -> StepOutcome:
    """The body of a step's Ray task: threads to the task's CPUs, a dead attempt's leftovers removed, run."""
    import torch

    torch.set_num_threads(max(1, threads))
    remove_step_temporaries(step_dir(ctx.run_dir, step))
    return run_step(step, ctx)


class RayPool:
    """A :class:`~skillmerge.experiment.schedule.StepPool` that takes every step, each as one Ray task."""

    def __init__(self, ctx: step_kinds.StepContext, cluster: Cluster, task: Any, ctx_ref: Any) -> None:
        self._ctx = ctx
        self._cluster = cluster
        self._task = task
        self._ctx_ref = ctx_ref

    def takes(self, step: Step) -> bool:
        return True

    def submit(self, step: Step) -> Future[StepOutcome]:
        try:
            request = step_resources(step, self._ctx, self._cluster)
            reason = self._cluster.infeasible(request)
            processes = training_processes(self._ctx) if step.kind == "train" else 1
        except Exception as err:  # e.g. a merge plan that cannot be read: the step's own failure
            return _failed(err)
        if reason is not None:
            return _failed(UsageError(f"step {step.id}: {reason}"))
        threads = int(request["num_cpus"]) // processes
        options = {k: (int(v) if k == "memory" else v) for k, v in request.items()}
        ref = self._task.options(name=step.id, **options).remote(step, self._ctx_ref, threads)
        return ref.future()


def _failed(err: BaseException) -> Future[StepOutcome]:
    future: Future[StepOutcome] = Future()
    future.set_exception(err)
    return future


def forwarded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The driver's variables that decide what a step does offline (hub, cache, thread settings)."""
    environ = dict(os.environ) if environ is None else environ
    return {k: v for k, v in sorted(environ.items()) if k.startswith(FORWARDED_ENV_PREFIXES)}


@contextmanager
def ray_pool(
    ctx: step_kinds.StepContext, address: str | None, echo: Callable[[str], None]
) -> Iterator[RayPool]:
    """Connect to the Ray cluster at ``address`` (``RAY_ADDRESS``, else a local instance) for one run."""
    require_ray()
    import ray

    started = not ray.is_initialized()
    if started:
        try:
            ray.init(
                address=address,
                runtime_env={"env_vars": forwarded_env()},
                logging_level="WARNING",
                configure_logging=True,
            )
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = address or os.environ.get("RAY_ADDRESS") or "a new local instance"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(f"--executor ray: cannot start or reach Ray at {where}: {first}") from None
    try:
        nodes = tuple(dict(node["Resources"]) for node in ray.nodes() if node.get("Alive"))
        cluster = Cluster(nodes)
        echo(f"ray: {cluster.text()}; run directory {ctx.run_dir} (every node must see it)")
        task = ray.remote(max_retries=RETRIES, retry_exceptions=False)(run_as_task)
        yield RayPool(ctx, cluster, task, ray.put(ctx))
    finally:
        if started:
            ray.shutdown()
