"""Multi-SLERP: a barycentre of N points on the hypersphere, taken through the tangent space at their mean.

With x_i = θ_i (or τ_i = θ_i − θ_base when there is a base), flattened, w_i the weights (÷ Σ_j w_j when
``normalize_weights``), u_i = x_i / max(‖x_i‖, eps)::

    m   = Σ_i w_i·u_i / max(‖Σ_i w_i·u_i‖, eps)        the weighted Euclidean mean, back on the sphere
    v_i = u_i − (m·u_i)·m                               u_i projected onto the tangent space at m
    d   = exp_m(Σ_i w_i·v_i)                            = m: the projections' weighted mean is 0 at m
    θ   = [θ_base +] d · Σ_i w_i·‖x_i‖

so the result points along the weighted mean direction with the weighted mean norm. One model is
returned unchanged (as mergekit does). Defaults as mergekit: ``normalize_weights`` True, ``eps`` 1e-8.

Every norm above follows from the Gram matrix G_ij = x_i·x_j (:mod:`.gram`, summed in float64):
‖x_i‖ = √G_ii and ‖Σ_i a_i·x_i‖² = Σ_ij a_i·a_j·G_ij with a_i = w_i / max(‖x_i‖, eps), so

    θ = [θ_base +] Σ_i c_i·x_i,   c_i = a_i · Σ_j w_j·‖x_j‖ / max(‖Σ_j a_j·x_j‖, eps)

— one pass for G, then an elementwise mix, which the engine streams slice by slice. float32 norms of
large tensors are not exact: torch's fp32 norm of SmolLM2-135M's 28M-entry embedding is 0.17% below
the float64 value, and mergekit's multislerp output norm there is 0.35% below the formula's (same
direction, cos = 1 − 1e-9); ours is the formula's to float64 accuracy. Small tensors agree to ~1e-6.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field

from skillmerge.errors import UsageError
from skillmerge.merge.methods.base import (
    MergeMethod,
    MethodParams,
    SliceMerge,
    TensorInputs,
    TensorSlices,
    half_precision,
)
from skillmerge.merge.methods.gram import Gram, combine, combine_into, gram
from skillmerge.merge.methods.task_arithmetic import task_vectors


class MultiSlerpParams(MethodParams):
    """``normalize_weights`` (default True) and ``eps`` > 0 (default 1e-8), as mergekit."""

    normalize_weights: bool = True
    eps: Annotated[float, Field(strict=True, gt=0, le=1)] = 1e-8


def _weights(name: str, weights: list[float], params: MultiSlerpParams) -> list[float]:
    if not params.normalize_weights:
        return list(weights)
    total = sum(weights)
    if total == 0:
        raise UsageError(f"tensor {name}: multislerp weights sum to 0 (set normalize_weights: false)")
    return [w / total for w in weights]


def coefficients(products: Gram, weights: list[float], eps: float) -> list[float]:
    """c_i of the module docstring from the points' Gram matrix (NaN when a norm is not finite: a NaN/inf
    input, or task vectors that overflowed float32; the engine then names the input or refuses)."""
    n = products.count
    if not products.finite():
        return [math.nan] * n
    norms = [products.norm(i) for i in range(n)]
    a = [w / max(norm, eps) for w, norm in zip(weights, norms, strict=True)]
    squared = sum(a[i] * a[j] * products.dot(i, j) for i in range(n) for j in range(n))
    mean_norm = math.sqrt(max(squared, 0.0))
    scale = sum(w * norm for w, norm in zip(weights, norms, strict=True))
    return [a_i * scale / max(mean_norm, eps) for a_i in a]


def multislerp(inputs: TensorInputs, params: MultiSlerpParams, rng: torch.Generator) -> torch.Tensor:
    """The weighted spherical mean direction of the models (or task vectors) times their mean norm."""
    if len(inputs.models) == 1:
        return inputs.models[0].clone()
    points = task_vectors(inputs) if inputs.base is not None else inputs.models
    weights = _weights(inputs.name, inputs.weights, params)
    if half_precision(points[0]):  # compute_dtype: mergekit's order, in the points' dtype
        return _multislerp_direct(inputs, points, weights, params.eps)
    merged = combine(coefficients(gram(points), weights, params.eps), points)
    return merged if inputs.base is None else inputs.base + merged


def _multislerp_direct(
    inputs: TensorInputs, points: list[torch.Tensor], weights: list[float], eps: float
) -> torch.Tensor:
    """The docstring's formula step by step in the points' own dtype (half precision, ``compute_dtype``)."""
    mean = torch.zeros(points[0].numel(), dtype=points[0].dtype, device=points[0].device)
    scale = 0.0
    for point, weight in zip(points, weights, strict=True):
        flat = point.reshape(-1)
        norm = float(torch.linalg.vector_norm(flat))
        mean += flat * (weight / max(norm, eps))
        scale += weight * norm
    direction = mean / max(float(torch.linalg.vector_norm(mean)), eps)
    merged = (direction * scale).reshape(points[0].shape)
    return merged if inputs.base is None else inputs.base + merged


def multislerp_streamed(slices: TensorSlices, params: MultiSlerpParams, rng: torch.Generator) -> SliceMerge:
    """:func:`multislerp` over slices: one pass for the Gram matrix of the points (models, or task vectors
    with a base), then the mix slice by slice, bitwise the whole-tensor result."""
    count = len(slices.model_flats)
    if count == 1:
        return SliceMerge(
            lambda start, stop: slices.model(0, start, stop).clone(),
            into=lambda start, stop, out: out.copy_(slices.model(0, start, stop)),
        )
    with_base = slices.base_flat is not None

    def points(start: int, stop: int) -> list[torch.Tensor]:
        if with_base:
            return [slices.delta(i, start, stop) for i in range(count)]
        return [slices.model(i, start, stop) for i in range(count)]

    weights = _weights(slices.name, slices.weights, params)
    products = Gram(count)
    for start, stop in slices.ranges():
        products.add(points(start, stop))
    c = coefficients(products, weights, params.eps)

    def merge(start: int, stop: int) -> torch.Tensor:
        merged = combine(c, points(start, stop))
        return slices.base(start, stop) + merged if with_base else merged

    def into(start: int, stop: int, out: torch.Tensor) -> None:
        combine_into(c, points(start, stop), out)
        if with_base:
            out.add_(slices.base(start, stop))  # θ_base + merged, bitwise

    # with a base, τ_i = θ_i − θ_base is NaN/inf wherever θ_base or θ_i is: the norms vouch for every input
    return SliceMerge(merge, into=into, inputs_checked=products.finite())


METHODS = (
    MergeMethod(
        name="multislerp",
        fn=multislerp,
        needs_base=False,
        params=MultiSlerpParams,
        formula="θ = [θ_base +] Σ w_i‖x_i‖ · normalize(Σ w_i x_i/‖x_i‖), x_i = θ_i [− θ_base]",
        streamed=multislerp_streamed,
        checks_inputs=True,
        light=True,
    ),
)
