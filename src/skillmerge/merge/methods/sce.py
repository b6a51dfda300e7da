"""SCE (FuseChat, Wan et al., 2024): select high-variance positions, calculate weights, erase sign conflicts.

With τ_i = θ_i − θ_base (N models, n entries)::

    select:    keep the ⌊select_topk·n⌋ positions with the largest variance of τ_i across models
               (equal variances: lower flat index first); τ_i ← τ_i ⊙ mask     (select_topk = 1: keep all)
    calculate: w_i = mean(τ_i²) / Σ_j mean(τ_j²)                               (matrix-level weights)
    erase:     s = sign(Σ_i τ_i) (+1 where 0);  a_i = [sign(τ_i) = s]
    θ = θ_base + Σ_i w_i·τ_i·a_i / Σ_i w_i·a_i                                 (÷ 1 where nothing agrees)

Where every selected τ_i is zero (or nothing is selected) θ = θ_base. The models' own weights play no part
(mergekit's sce has none); the sign is elected from the unweighted sum, as mergekit does. No randomness.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from skillmerge.merge.methods.base import MergeMethod, MethodParams, TensorInputs
from skillmerge.merge.methods.sparsify import top_k_mask
from skillmerge.merge.methods.task_arithmetic import require_base, task_vectors


class SceParams(MethodParams):
    """``select_topk`` in [0, 1] (default 1: no selection), as mergekit; ``int8_mask`` changes nothing."""

    select_topk: Annotated[float, Field(strict=True, ge=0, le=1)] = 1.0
    int8_mask: bool = False


def variance_mask(deltas: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mask of the ⌊fraction·n⌋ positions whose values vary most across ``deltas`` (stacked on dim 0)."""
    variance = deltas.var(dim=0) if deltas.shape[0] > 1 else torch.zeros_like(deltas[0])
    return top_k_mask(variance, int(fraction * variance.numel()))


def sce(inputs: TensorInputs, params: SceParams, rng: torch.Generator) -> torch.Tensor:
    """θ_base + the weighted, sign-agreeing mean of the variance-selected task vectors."""
    base = require_base(inputs)
    stacked = torch.stack(task_vectors(inputs))
    if params.select_topk < 1:
        stacked = stacked * variance_mask(stacked, params.select_topk)
    energy = stacked.pow(2).reshape(stacked.shape[0], -1).mean(dim=1)
    if float(energy.sum()) == 0:
        return base.clone()
    weights = (energy / energy.sum()).reshape(-1, *([1] * base.dim()))
    elected = torch.where(stacked.sum(dim=0) >= 0, 1.0, -1.0)
    agree = torch.sign(stacked) == elected
    mixed = (stacked * weights * agree).sum(dim=0)
    divisor = (weights * agree).sum(dim=0)
    return base + mixed / torch.where(divisor == 0, 1.0, divisor)


METHODS = (
    MergeMethod(
        name="sce",
        fn=sce,
        needs_base=True,
        params=SceParams,
        formula="θ = θ_base + Σ w_i·τ_i·a_i / Σ w_i·a_i, w_i ∝ mean(τ_i²), top-variance entries, TIES signs",
    ),
)
