"""Kill-safe checkpoints: ``CKPT_DIR/step-00000012/`` holds everything needed to continue bit for bit.

Contents (``accelerate``'s ``save_state`` plus one JSON file):

- ``model.safetensors``: the weights (full finetuning) or only the trainable LoRA tensors;
- ``optimizer.bin``, ``custom_checkpoint_0.pkl`` (the LR scheduler), ``random_states_<rank>.pkl`` (python,
  numpy, torch and CUDA generator states of every process);
- ``trainer_state.json``: the optimizer step (the data position: batches are a pure function of the step),
  the run's trajectory config, cost counters so far and the number of metrics lines written.

``accelerate`` handles sharded optimizers/weights under FSDP and DeepSpeed. A checkpoint is written into
``.step-N.tmp`` and renamed once every process has finished, so a SIGKILL at any moment leaves either a
complete checkpoint or none; incomplete temporaries are ignored and removed on the next save.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from skillmerge.atomic import atomic_file
from skillmerge.errors import UsageError

STATE_FILE = "trainer_state.json"
PREFIX = "step-"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints (they have a state file), oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None


def drop_frozen_weights(models: list[torch.nn.Module], weights: list[dict[str, Any]], _dir: str) -> None:
    """A ``save_state`` pre-hook: keep trainable tensors only, so a LoRA checkpoint holds the adapter."""
    for i, module in enumerate(models):
        trainable = {name for name, p in module.named_parameters() if p.requires_grad}
        weights[i] = {k: v for k, v in weights[i].items() if k in trainable}


def save_checkpoint(
    accelerator: Accelerator, ckpt_dir: Path, step: int, state: dict[str, Any], keep: int
) -> Path | None:
    """Write checkpoint ``step`` atomically (every process calls this); keep the ``keep`` newest."""
    final = ckpt_dir / checkpoint_name(step)
    tmp = ckpt_dir / f".{checkpoint_name(step)}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # accelerate warns that it drops the tied lm_head copy; loading re-ties it, so the warning is noise.
    other_logger = logging.getLogger("accelerate.utils.other")
    level = other_logger.level
    other_logger.setLevel(logging.ERROR)
    try:
        accelerator.save_state(str(tmp))
    finally:
        other_logger.setLevel(level)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with atomic_file(tmp / STATE_FILE) as handle:
            json.dump({"step": step, **state}, handle, indent=2)
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(ckpt_dir)
        for old in list_checkpoints(ckpt_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_trainer_state(path: Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of checkpoint ``path``."""
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def load_checkpoint(accelerator: Accelerator, path: Path, *, adapter_only: bool) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG states from ``path``; return its trainer state."""
    state = read_trainer_state(path)
    # A LoRA checkpoint has no frozen tensors: they come from the base model, loaded as at the start.
    accelerator.load_state(str(path), strict=not adapter_only)
    return state


def check_same_run(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint whose trajectory config differs, naming each differing field."""
    keys = sorted(set(saved) | set(current))
    differ = [k for k in keys if saved.get(k) != current.get(k)]
    if differ:
        shown = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}" for k in differ[:5])
        more = f" (+{len(differ) - 5} more)" if len(differ) > 5 else ""
        raise UsageError(f"{path}: checkpoint is from a different config: {shown}{more}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
