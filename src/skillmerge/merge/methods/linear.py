"""Linear merge (model soup): θ = Σ_i w_i·θ_i, divided by Σ_i w_i when ``normalize`` (the default)."""

from __future__ import annotations

import torch

from skillmerge.errors import UsageError
from skillmerge.merge.methods.base import MergeMethod, MethodParams, TensorInputs
from skillmerge.merge.methods.task_arithmetic import combine_models_into


class LinearParams(MethodParams):
    """``normalize`` (default True, as mergekit): divide by Σ_i w_i so the weights act as proportions."""

    normalize: bool = True


def linear(inputs: TensorInputs, params: LinearParams, rng: torch.Generator) -> torch.Tensor:
    """θ = Σ_i w_i·θ_i / Σ_i w_i (``normalize``) or Σ_i w_i·θ_i. θ_base, if any, plays no part.

    Unlike mergekit, which would write inf/NaN, weights that sum to 0 with ``normalize`` are refused.
    """
    _check_total(inputs, params)
    merged = torch.zeros_like(inputs.models[0])
    for model, weight in zip(inputs.models, inputs.weights, strict=True):
        merged += model * weight
    if params.normalize:
        merged /= sum(inputs.weights)
    return merged


def linear_into(inputs: TensorInputs, params: LinearParams, out: torch.Tensor) -> None:
    """:func:`linear` written into ``out`` (the engine's in-place form, bitwise the same)."""
    _check_total(inputs, params)
    combine_models_into(out, inputs.models, inputs.weights, None, normalize=params.normalize, lambda_=1.0)


def _check_total(inputs: TensorInputs, params: LinearParams) -> None:
    if len(inputs.weights) != len(inputs.models):
        raise UsageError(
            f"tensor {inputs.name}: {len(inputs.weights)} weights for {len(inputs.models)} models"
        )
    if params.normalize and sum(inputs.weights) == 0:
        raise UsageError(
            f"tensor {inputs.name}: linear weights sum to 0, cannot normalize (set normalize: false)"
        )


METHODS = (
    MergeMethod(
        name="linear",
        fn=linear,
        needs_base=False,
        params=LinearParams,
        formula="θ = Σ w_i θ_i (÷ Σ w_i when normalize)",
        elementwise=True,
        into=linear_into,
    ),
)
