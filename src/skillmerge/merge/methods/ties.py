"""TIES-merging (Yadav et al., 2023): trim, elect sign, disjoint merge.

    τ_i' = top-density_i magnitudes of τ_i                      (per-model density, default 1 = no trim)
    s    = sign(Σ_i w_i·τ_i')                                   (+1 where the sum is 0)
    a_i  = [sign(w_i·τ_i') = s]                                 (trimmed and zero entries never agree)
    θ    = θ_base + λ·Σ_i w_i·τ_i'·a_i / Σ_i w_i·a_i           (without the division if normalize: false)

Defaults as mergekit's ``ties``: normalize = True, rescale = False, λ = 1.
"""

from __future__ import annotations

import torch

from skillmerge.merge.methods.base import MergeMethod, TensorInputs
from skillmerge.merge.methods.sparsify import DensityParams, magnitude
from skillmerge.merge.methods.task_arithmetic import (
    GeneralizedParams,
    combine_task_vectors,
    per_model_params,
    require_base,
    task_vectors,
)


class TiesParams(GeneralizedParams):
    """ties: ``normalize`` = True by default (mergekit)."""

    normalize: bool = True


def ties(inputs: TensorInputs, params: TiesParams, rng: torch.Generator) -> torch.Tensor:
    """TIES: magnitude trim per model, sign election by summed mass, disjoint (weighted) mean, ×λ."""
    base = require_base(inputs)
    trimmed = [
        magnitude(delta, model.density, params.rescale_mode)
        for delta, model in zip(task_vectors(inputs), per_model_params(inputs, DensityParams), strict=True)
    ]
    return combine_task_vectors(
        base, trimmed, inputs.weights, consensus=True, normalize=params.normalize, lambda_=params.lambda_
    )


METHODS = (
    MergeMethod(
        name="ties",
        fn=ties,
        needs_base=True,
        params=TiesParams,
        model_params=DensityParams,
        doc="θ_base + λ·disjoint_mean(sign-elected top-density τ_i)",
    ),
)
