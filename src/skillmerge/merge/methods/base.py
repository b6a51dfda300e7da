"""The contract between the merge engine and merge methods.

A method is a pure function on the tensors of ONE parameter name: it never reads files, picks devices or
dtypes, or seeds global RNGs — the engine does all of that. The engine hands it a :class:`TensorInputs` in
fp32 and a ``torch.Generator`` seeded from (merge seed, tensor name), so results do not depend on thread
count or tensor order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel

from skillmerge.merge.params import MethodParams, ModelParams

__all__ = ["MergeFn", "MergeMethod", "MethodParams", "ModelParams", "TensorInputs"]


@dataclass
class TensorInputs:
    """One tensor name across all inputs, fp32.

    ``models[i]`` is θ_i; ``deltas[i]`` is θ_i − θ_base (for a LoRA entry the engine builds ΔW = scale·B·A
    directly, and ``models[i] = base + ΔW``). ``weights[i]`` is model i's weight after per-tensor overrides;
    ``model_params[i]`` holds model i's validated per-model parameters (e.g. ``density``).
    """

    name: str
    base: torch.Tensor | None
    models: list[torch.Tensor]
    deltas: list[torch.Tensor] | None
    weights: list[float]
    model_params: list[BaseModel] = field(default_factory=list)


def task_vector(model: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """τ = θ − θ_base, on fp32 tensors: the one place a task vector is formed from two models."""
    return model - base


MergeFn = Callable[[TensorInputs, Any, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class MergeMethod:
    """A registered method: its function, whether it needs θ_base, and its parameter schemas.

    ``elementwise``: output entry j depends only on entry j of each input, through the same operations
    whatever the tensor's size, and the method draws nothing from its generator. The engine may then run it
    over flat slices of a large tensor (bounding memory, keeping operands in cache) with a result bitwise
    equal to one whole-tensor call. Methods that rank, sample or take norms (TIES, DARE, breadcrumbs,
    SLERP) must leave it False.
    """

    name: str
    fn: MergeFn
    needs_base: bool
    params: type[MethodParams] = MethodParams
    model_params: type[ModelParams] = ModelParams
    min_models: int = 1
    max_models: int | None = None
    formula: str = ""  # one line, "θ = …", written once here: the merged model card quotes it
    elementwise: bool = False
