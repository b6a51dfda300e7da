"""Supervised finetuning (full or LoRA) on ``accelerate``: ``skillmerge.train.run(config)``.

The recipe is :mod:`skillmerge.train.sft`; configuration :mod:`skillmerge.train.config`; the CLI
``skillmerge train`` is :func:`skillmerge.train.command.train_command`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from skillmerge.train.config import PRESETS, TrainConfig, build_train_config, load_train_config

if TYPE_CHECKING:
    from skillmerge.train.sft import TrainResult


def run(config: TrainConfig) -> TrainResult:
    """Train as ``config`` says and write ``config.out`` (a model or adapter directory with manifest.json)."""
    from skillmerge.train.sft import train

    return train(config)


def __getattr__(name: str) -> Any:
    # The recipe (torch, transformers, accelerate) loads on first use, so `skillmerge --help` stays instant.
    if name == "TrainResult":
        return importlib.import_module("skillmerge.train.sft").TrainResult
    raise AttributeError(f"module 'skillmerge.train' has no attribute {name!r}")


__all__ = ["PRESETS", "TrainConfig", "TrainResult", "build_train_config", "load_train_config", "run"]
