"""The ``lm-eval`` suite: lm-evaluation-harness tasks as one suite of a spec or of ``skillmerge eval``.

Options: ``tasks`` (lm-eval task names, a list or a comma-separated string; an entry that is a task file
goes to ``paths``), ``paths`` (local task files or folders, fingerprinted into a spec's eval keys like every
file option: give the folder that holds a task and its data), ``num_fewshot``, ``batch_size``
and ``apply_chat_template`` (default true, as our suites prompt through the chat template). lm-eval runs on
the directory the backend was loaded from (:mod:`skillmerge.evaluate.lm_eval_bridge`), on its device and
in its dtype. ``limit`` is lm-eval's: the first N documents of each task (``seed`` seeds lm-eval's own
randomness, e.g. few-shot draws).
"""

from __future__ import annotations

from pathlib import Path

from skillmerge.errors import UsageError
from skillmerge.evaluate.lm_eval_bridge import (
    SUITE_NAME,
    TASK_SUFFIXES,
    parse_tasks,
    require_lm_eval,
    run_lm_eval,
)
from skillmerge.evaluate.suites import register_suite
from skillmerge.evaluate.suites.base import ModelBackend, Suite, SuiteResult


@register_suite(SUITE_NAME, category="general")
class LmEvalSuite(Suite):
    name = SUITE_NAME

    def __init__(
        self,
        tasks: str | list[str] | None = None,
        paths: str | list[str] | None = None,
        num_fewshot: int | None = None,
        batch_size: int = 8,
        apply_chat_template: bool = True,
    ) -> None:
        # A task entry that names a task file (ends in .yaml/.yml, or exists on disk) is a path.
        named = parse_tasks(tasks)
        self.tasks = [t for t in named if not _is_task_path(t)]
        given = [paths] if isinstance(paths, str) else list(paths or [])
        self.paths = [Path(p) for p in [*given, *(t for t in named if _is_task_path(t))]]
        if not self.tasks and not self.paths:
            raise UsageError("suite lm-eval: give tasks (lm-eval task names) or paths (local task files)")
        for path in self.paths:
            if not path.exists():
                raise UsageError(f"suite lm-eval: {path}: task file or folder does not exist")
        if batch_size < 1:
            raise UsageError(f"suite lm-eval: batch_size must be ≥ 1, got {batch_size}")
        self.num_fewshot = num_fewshot
        self.batch_size = batch_size
        self.apply_chat_template = apply_chat_template
        require_lm_eval()

    def run(self, backend: ModelBackend, *, limit: int | None = None, seed: int = 0) -> SuiteResult:
        source = getattr(backend, "source", None)
        if source is None:
            raise UsageError(
                f"suite lm-eval: backend {backend.name!r} was not loaded from a model directory, "
                "which lm-eval needs to load the model itself"
            )
        device, dtype = _placement(backend)
        return run_lm_eval(
            source,
            self.tasks,
            paths=self.paths,
            limit=limit,
            seed=seed,
            batch_size=self.batch_size,
            apply_chat_template=self.apply_chat_template,
            device=device,
            dtype=dtype,
            num_fewshot=self.num_fewshot,
        )


def _placement(backend: ModelBackend) -> tuple[str, str]:
    """The backend's device and dtype (an HF backend's model), else CUDA in bf16 when present, CPU in fp32."""
    model = getattr(backend, "model", None)
    if model is not None and hasattr(model, "dtype"):
        return str(getattr(backend, "device", "cpu")), str(model.dtype).removeprefix("torch.")
    import torch

    return ("cuda", "bfloat16") if torch.cuda.is_available() else ("cpu", "float32")


def _is_task_path(entry: str) -> bool:
    return entry.endswith(TASK_SUFFIXES) or Path(entry).exists()
