"""Multi-SLERP: a barycentre of N points on the hypersphere, taken through the tangent space at their mean.

With x_i = θ_i (or τ_i = θ_i − θ_base when there is a base), flattened, w_i the weights (÷ Σ_j w_j when
``normalize_weights``), u_i = x_i / max(‖x_i‖, eps)::

    m   = Σ_i w_i·u_i / max(‖Σ_i w_i·u_i‖, eps)        the weighted Euclidean mean, back on the sphere
    v_i = u_i − (m·u_i)·m                               u_i projected onto the tangent space at m
    d   = exp_m(Σ_i w_i·v_i)                            = m: the projections' weighted mean is 0 at m
    θ   = [θ_base +] d · Σ_i w_i·‖x_i‖

so the result points along the weighted mean direction with the weighted mean norm. One model is
returned unchanged (as mergekit does). Defaults as mergekit: ``normalize_weights`` True, ``eps`` 1e-8.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from skillmerge.errors import UsageError
from skillmerge.merge.methods.base import MergeMethod, MethodParams, TensorInputs
from skillmerge.merge.methods.task_arithmetic import task_vectors


class MultiSlerpParams(MethodParams):
    """``normalize_weights`` (default True) and ``eps`` > 0 (default 1e-8), as mergekit."""

    normalize_weights: bool = True
    eps: Annotated[float, Field(strict=True, gt=0, le=1)] = 1e-8


def multislerp(inputs: TensorInputs, params: MultiSlerpParams, rng: torch.Generator) -> torch.Tensor:
    """The weighted spherical mean direction of the models (or task vectors) times their mean norm."""
    if len(inputs.models) == 1:
        return inputs.models[0].clone()
    points = task_vectors(inputs) if inputs.base is not None else inputs.models
    weights = list(inputs.weights)
    if params.normalize_weights:
        total = sum(weights)
        if total == 0:
            raise UsageError(
                f"tensor {inputs.name}: multislerp weights sum to 0 (set normalize_weights: false)"
            )
        weights = [w / total for w in weights]
    mean = torch.zeros(points[0].numel(), dtype=points[0].dtype, device=points[0].device)
    scale = 0.0
    for point, weight in zip(points, weights, strict=True):
        flat = point.reshape(-1)
        norm = float(torch.linalg.vector_norm(flat))
        mean += flat * (weight / max(norm, params.eps))
        scale += weight * norm
    direction = mean / max(float(torch.linalg.vector_norm(mean)), params.eps)
    merged = (direction * scale).reshape(points[0].shape)
    return merged if inputs.base is None else inputs.base + merged


METHODS = (
    MergeMethod(
        name="multislerp",
        fn=multislerp,
        needs_base=False,
        params=MultiSlerpParams,
        formula="θ = [θ_base +] Σ w_i‖x_i‖ · normalize(Σ w_i x_i/‖x_i‖), x_i = θ_i [− θ_base]",
    ),
)
