"""Merge models tensor by tensor: task arithmetic, TIES, DARE, ... and exact LoRA task vectors.

The one public entry is :func:`run`; ``skillmerge merge CONFIG --out DIR`` calls it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillmerge.errors import OutputExistsError, UsageError
from skillmerge.frozen_heap import frozen_heap

if TYPE_CHECKING:
    from skillmerge.merge.config import MergeConfig, load_merge_config
    from skillmerge.merge.engine import MergeResult
    from skillmerge.merge.plan import MergePlan, build_plan

__all__ = ["MergeConfig", "MergePlan", "MergeResult", "build_plan", "load_merge_config", "run"]

# Importing the package stays cheap (the CLI imports it to build `skillmerge --help`); torch and the engine
# load on first use.
_LAZY = {
    "MergeConfig": "skillmerge.merge.config",
    "load_merge_config": "skillmerge.merge.config",
    "MergeResult": "skillmerge.merge.engine",
    "MergePlan": "skillmerge.merge.plan",
    "build_plan": "skillmerge.merge.plan",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'skillmerge.merge' has no attribute {name!r}")


def run(
    config: MergeConfig | str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: bool | None = None,
    compute_dtype: str | None = None,
) -> MergeResult:
    """Validate ``config`` against its inputs, then merge into ``out_dir`` (atomically).

    ``config`` is a :class:`MergeConfig` or a YAML path (our form or mergekit's). With ``dry_run`` nothing is
    written: the result carries the plan (tensors, bytes, estimated memory). ``progress`` shows a bar over
    tensors (default: when stderr is a terminal). ``compute_dtype`` replaces the config's (``float32``,
    ``float16``, ``bfloat16`` or ``dtype``: mergekit's half-precision arithmetic). Bad input raises a
    one-line :class:`UsageError`/:class:`ModelError` and leaves nothing at ``out_dir``.
    """
    from skillmerge.merge.config import MergeConfig, load_merge_config
    from skillmerge.merge.engine import MergeResult, execute
    from skillmerge.merge.plan import build_plan

    if not isinstance(config, MergeConfig):
        config = load_merge_config(config)
    if compute_dtype is not None:
        config = config.with_compute_dtype(compute_dtype)
    out_dir = Path(out_dir)
    if not dry_run and out_dir.exists() and not overwrite:
        raise OutputExistsError(f"{out_dir}: output exists (pass --overwrite to replace it)")
    plan = build_plan(config)
    try:
        for item in plan.inputs():
            if out_dir.resolve() == item.path.resolve():
                raise UsageError(f"{out_dir}: the output would replace an input of the merge")
        if dry_run:
            return MergeResult(
                out_dir=out_dir,
                dry_run=True,
                plan=plan.to_dict(),
                tensors=len(plan.tensors),
                bytes_read=plan.bytes_read,
                bytes_written=plan.bytes_written,
                description=plan.describe(),
            )
        show = sys.stderr.isatty() if progress is None else progress
        with frozen_heap():  # the per-slice objects, not torch's, are what the collector should walk
            return execute(plan, out_dir, overwrite=overwrite, progress=show)
    finally:
        plan.close()
