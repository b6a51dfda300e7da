"""Karcher mean: the Riemannian (Fréchet) mean of the models' directions on the unit sphere, scaled back.

With x_i = θ_i flattened, of the N models those with ‖x_i‖ > 1e-8 (K of them) give u_i = x_i/‖x_i‖::

    ū     = (1/K)·Σ_i u_i
    m_0   = ū/‖ū‖ if ‖ū‖ > tol, else u_1 (the first such model: the mean is no direction then)
    T_k   = (1/K)·Σ_i log_{m_k}(u_i),   log_m(u) = θ/sin θ·(u − cos θ·m),  cos θ = m·u
    m_k+1 = exp_{m_k}(T_k) = cos‖T_k‖·m_k + sin‖T_k‖·T_k/‖T_k‖      until ‖T_k‖ < tol, at most max_iter steps
    θ     = m · (1/N)·Σ_i ‖x_i‖                                      (0 when every model is 0)

Weights and any base play no part (mergekit's karcher has neither). Defaults as mergekit: max_iter 10,
tol 1e-5.

Every m_k and T_k is a combination Σ_i c_i·u_i of the directions, and every quantity the steps need
(m·u_i, ‖T‖, ‖m‖) is a quadratic form in the coefficients over the Gram matrix u_i·u_j. So the steps run on
the K × K Gram matrix, summed in float64 (:mod:`.gram`), and the output is one elementwise mix
Σ_i c_i·‖x̄‖/‖x_i‖·x_i: the engine streams it — one pass for the products, then the mix slice by slice —
with the same output as the whole tensor. (mergekit iterates on float32 vectors of the tensor's size; the
two agree to float32 rounding, where mergekit's float32 norms of large tensors allow: see the README.) In
half precision (``compute_dtype``) the steps run on the vectors in that dtype; mergekit's rounding there
is not reproduced bit for bit.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field

from skillmerge.merge.methods.base import (
    MergeMethod,
    MethodParams,
    SliceMerge,
    TensorInputs,
    TensorSlices,
    half_precision,
)
from skillmerge.merge.methods.gram import Gram, combine, combine_into, gram

ZERO_NORM = 1e-8
TINY_ANGLE = 1e-12  # a direction this close to the point adds nothing to the tangent mean (θ/sin θ → 1)


class KarcherParams(MethodParams):
    """``max_iter`` ≥ 0 (default 10) and ``tol`` ≥ 0 (default 1e-5), as mergekit."""

    max_iter: Annotated[int, Field(strict=True, ge=0)] = 10
    tol: Annotated[float, Field(strict=True, ge=0)] = 1e-5


def _quadratic(a: list[float], g: list[list[float]], b: list[float]) -> float:
    """aᵀ·G·b."""
    return sum(a[p] * sum(row[q] * b[q] for q in range(len(b))) for p, row in enumerate(g))


def _unit_length(c: list[float], g: list[list[float]]) -> float:
    return math.sqrt(max(_quadratic(c, g, c), 0.0))


def karcher_coefficients(products: Gram, max_iter: int, tol: float) -> list[float]:
    """c_i with θ = Σ_i c_i·x_i: the steps of the module docstring on the models' Gram matrix.

    NaN coefficients when a product is not finite (a NaN/inf input): the mix is then NaN and the engine
    refuses the tensor, naming the input."""
    n = products.count
    if not products.finite():
        return [math.nan] * n
    norms = [products.norm(i) for i in range(n)]
    live = [i for i in range(n) if norms[i] > ZERO_NORM]
    if not live:
        return [0.0] * n
    k = len(live)
    g = [[products.dot(i, j) / (norms[i] * norms[j]) for j in live] for i in live]  # u_i·u_j
    point = [1.0 / k] * k  # the chordal mean ū
    chordal = _unit_length(point, g)
    point = [c / chordal for c in point] if chordal > tol else [1.0] + [0.0] * (k - 1)
    for _ in range(max_iter):
        cosines = [max(-1.0, min(1.0, sum(point[p] * g[p][q] for p in range(k)))) for q in range(k)]
        step = [0.0] * k  # T = Σ_q θ_q/sin θ_q·(u_q − cos θ_q·m) / K
        for q, cos in enumerate(cosines):
            angle = math.acos(cos)
            if angle > TINY_ANGLE:
                factor = angle / math.sin(angle) / k
                step[q] += factor
                for p in range(k):
                    step[p] -= factor * cos * point[p]
        length = _unit_length(step, g)
        if length < tol:
            break
        along, across = math.cos(length), math.sin(length) / length
        point = [along * c + across * s for c, s in zip(point, step, strict=True)]
        size = _unit_length(point, g)  # stay on the sphere despite rounding
        point = [c / size for c in point]
    scale = sum(norms) / n
    coefficients = [0.0] * n
    for p, i in enumerate(live):
        coefficients[i] = point[p] * scale / norms[i]
    return coefficients


def _tangent_mean(point: torch.Tensor, directions: list[torch.Tensor]) -> torch.Tensor:
    """(1/K)·Σ_i log_point(u_i) on the vectors themselves (half precision)."""
    total = torch.zeros_like(point)
    for direction in directions:
        cos = max(-1.0, min(1.0, float(torch.dot(point, direction))))
        angle = math.acos(cos)
        if angle > TINY_ANGLE:
            total += (direction - point * cos) * (angle / math.sin(angle))
    return total / len(directions)


def _karcher_vectors(models: list[torch.Tensor], max_iter: int, tol: float) -> torch.Tensor:
    """The steps of the module docstring on the flattened tensors in their own dtype (half precision)."""
    flats = [model.reshape(-1) for model in models]
    norms = [float(torch.linalg.vector_norm(flat)) for flat in flats]
    directions = [flat / norm for flat, norm in zip(flats, norms, strict=True) if norm > ZERO_NORM]
    if not directions:
        return torch.zeros_like(models[0])
    point = sum(directions[1:], directions[0].clone()) / len(directions)
    chordal = float(torch.linalg.vector_norm(point))
    point = point / chordal if chordal > tol else directions[0].clone()
    for _ in range(max_iter):
        step = _tangent_mean(point, directions)
        length = float(torch.linalg.vector_norm(step))
        if length < tol:
            break
        point = point * math.cos(length) + step * (math.sin(length) / length)
        point = point / torch.linalg.vector_norm(point)
    return (point * (sum(norms) / len(norms))).reshape(models[0].shape)


def karcher(inputs: TensorInputs, params: KarcherParams, rng: torch.Generator) -> torch.Tensor:
    """The Karcher mean direction of the models times their mean norm."""
    if half_precision(inputs.models[0]):
        return _karcher_vectors(inputs.models, params.max_iter, params.tol)
    coefficients = karcher_coefficients(gram(inputs.models), params.max_iter, params.tol)
    return combine(coefficients, inputs.models)


def karcher_streamed(slices: TensorSlices, params: KarcherParams, rng: torch.Generator) -> SliceMerge:
    """:func:`karcher` over slices: one pass for the models' Gram matrix, then the mix per slice."""
    n = len(slices.model_flats)
    products = Gram(n)
    for start, stop in slices.ranges():
        products.add([slices.model(i, start, stop) for i in range(n)])
    coefficients = karcher_coefficients(products, params.max_iter, params.tol)

    def models(start: int, stop: int) -> list[torch.Tensor]:
        return [slices.model(i, start, stop) for i in range(n)]

    # every model's norm is finite exactly when the model is; an unused base was never read
    return SliceMerge(
        lambda start, stop: combine(coefficients, models(start, stop)),
        into=lambda start, stop, out: combine_into(coefficients, models(start, stop), out),
        inputs_checked=products.finite() and slices.base_flat is None,
    )


METHODS = (
    MergeMethod(
        name="karcher",
        fn=karcher,
        needs_base=False,
        params=KarcherParams,
        formula="θ = mean_i ‖θ_i‖ · argmin_{‖m‖=1} Σ_i arccos²(m·θ_i/‖θ_i‖) (Riemannian gradient steps)",
        streamed=karcher_streamed,
        checks_inputs=True,
        light=True,
    ),
)
