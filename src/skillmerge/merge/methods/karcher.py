"""Karcher mean: the Riemannian (Fréchet) mean of the models' directions on the unit sphere, scaled back.

With x_i = θ_i flattened, of the N models those with ‖x_i‖ > 1e-8 (K of them) give u_i = x_i/‖x_i‖::

    ū     = (1/K)·Σ_i u_i
    m_0   = ū/‖ū‖ if ‖ū‖ > tol, else u_1 (the first such model: the mean is no direction then)
    T_k   = (1/K)·Σ_i log_{m_k}(u_i),   log_m(u) = θ/sin θ·(u − cos θ·m),  cos θ = m·u
    m_k+1 = exp_{m_k}(T_k) = cos‖T_k‖·m_k + sin‖T_k‖·T_k/‖T_k‖      until ‖T_k‖ < tol, at most max_iter steps
    θ     = m · (1/N)·Σ_i ‖x_i‖                                      (0 when every model is 0)

Weights and any base play no part (mergekit's karcher has neither). Defaults as mergekit: max_iter 10,
tol 1e-5.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field

from skillmerge.merge.methods.base import MergeMethod, MethodParams, TensorInputs

ZERO_NORM = 1e-8


class KarcherParams(MethodParams):
    """``max_iter`` ≥ 0 (default 10) and ``tol`` ≥ 0 (default 1e-5), as mergekit."""

    max_iter: Annotated[int, Field(strict=True, ge=0)] = 10
    tol: Annotated[float, Field(strict=True, ge=0)] = 1e-5


def tangent_mean(point: torch.Tensor, directions: list[torch.Tensor]) -> torch.Tensor:
    """(1/K)·Σ_i log_point(u_i): the mean of the unit vectors mapped to the tangent space at ``point``.

    One scratch vector for every term, updated in place (a 28M-entry embedding would otherwise hold three
    temporaries per term).
    """
    total = torch.zeros_like(point)
    term = torch.empty_like(point)
    for direction in directions:
        cos = max(-1.0, min(1.0, float(torch.dot(point, direction))))
        angle = math.acos(cos)
        if angle > 1e-12:  # u = point contributes nothing (and θ/sin θ → 1 there)
            torch.mul(point, cos, out=term)
            torch.sub(direction, term, out=term)
            total += term.mul_(angle / math.sin(angle))
    return total.div_(len(directions))


def karcher_mean(directions: list[torch.Tensor], max_iter: int, tol: float) -> torch.Tensor:
    """The Karcher mean of unit vectors by Riemannian gradient steps, as in the module docstring."""
    point = torch.zeros_like(directions[0])
    for direction in directions:  # the chordal mean, summed in place (no stacked copy of every model)
        point += direction
    point.div_(len(directions))
    chordal_norm = float(torch.linalg.vector_norm(point))
    if chordal_norm > tol:
        point.div_(chordal_norm)
    else:
        point = directions[0].clone()
    for _ in range(max_iter):
        step = tangent_mean(point, directions)
        length = float(torch.linalg.vector_norm(step))
        if length < tol:
            break
        point.mul_(math.cos(length)).add_(step.mul_(math.sin(length) / length))
        del step
        point.div_(torch.linalg.vector_norm(point))  # stay on the sphere despite rounding
    return point


def karcher(inputs: TensorInputs, params: KarcherParams, rng: torch.Generator) -> torch.Tensor:
    """The Karcher mean direction of the models times their mean norm."""
    flats = [model.reshape(-1) for model in inputs.models]
    norms = [float(torch.linalg.vector_norm(flat)) for flat in flats]
    directions = [flat / norm for flat, norm in zip(flats, norms, strict=True) if norm > ZERO_NORM]
    del flats
    if not directions:
        return torch.zeros_like(inputs.models[0])
    mean = karcher_mean(directions, params.max_iter, params.tol)
    del directions
    return mean.mul_(sum(norms) / len(norms)).reshape(inputs.models[0].shape)


METHODS = (
    MergeMethod(
        name="karcher",
        fn=karcher,
        needs_base=False,
        params=KarcherParams,
        formula="θ = mean_i ‖θ_i‖ · argmin_{‖m‖=1} Σ_i arccos²(m·θ_i/‖θ_i‖) (Riemannian gradient steps)",
    ),
)
