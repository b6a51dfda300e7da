"""Passthrough: one model's tensors copied through, each optionally multiplied by a per-tensor ``scale``.

    θ = scale · θ_1           (scale = 1 unless set; per tensor through overrides / mergekit filters)

Picking tensors from other models, or stacking layer ranges, is not done here: this is mergekit's
``passthrough`` with a single model and no ``slices``.
"""

from __future__ import annotations

import torch

from skillmerge.errors import UsageError
from skillmerge.merge.methods.base import MergeMethod, MethodParams, ModelParams, TensorInputs
from skillmerge.merge.methods.task_arithmetic import per_model_params
from skillmerge.merge.params import Number


class PassthroughModelParams(ModelParams):
    """Per model: ``scale``, a factor for the tensor (default: none, the tensor as it is)."""

    scale: Number | None = None


def passthrough(inputs: TensorInputs, params: MethodParams, rng: torch.Generator) -> torch.Tensor:
    """θ_1, times its ``scale`` when one is set."""
    if len(inputs.models) != 1:
        raise UsageError(
            f"tensor {inputs.name}: passthrough takes exactly one model, got {len(inputs.models)}"
        )
    (model,) = inputs.models
    (own,) = per_model_params(inputs, PassthroughModelParams)
    return model.clone() if own.scale is None else model * own.scale


METHODS = (
    MergeMethod(
        name="passthrough",
        fn=passthrough,
        needs_base=False,
        model_params=PassthroughModelParams,
        min_models=1,
        max_models=1,
        formula="θ = scale·θ_1 (scale = 1 unless set)",
        elementwise=True,
    ),
)
