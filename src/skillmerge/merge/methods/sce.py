"""SCE (FuseChat, Wan et al., 2024): select high-variance positions, calculate weights, erase sign conflicts.

With τ_i = θ_i − θ_base (N models, n entries)::

    select:    keep the k = ⌊select_topk·m⌋ positions with the largest variance of τ_i across models,
               m the number of nonzero variances (equal variances: lower flat index first);
               τ_i ← τ_i ⊙ mask                                                (select_topk = 1: keep all)
    calculate: w_i = mean(τ_i²) / Σ_j mean(τ_j²)                               (matrix-level weights)
    erase:     s = sign(Σ_i τ_i) (+1 where 0);  a_i = [sign(τ_i) = s]
    θ = θ_base + Σ_i w_i·τ_i·a_i / Σ_i w_i·a_i                                 (÷ 1 where nothing agrees)

Where every selected τ_i is zero (or nothing is selected) θ = θ_base. The models' own weights play no part
(mergekit's sce has none); the sign is elected from the unweighted sum, as mergekit does. No randomness.

k is mergekit 0.1.5's: the count of nonzero variances times select_topk as torch multiplies an int64
count by a float (in float32, so above 2^24 positions k can exceed the exact ⌊select_topk·m⌋ by a few).
The variance is the unbiased one (÷ N − 1; zero for one model), as ``torch.var`` gives it (see
:func:`variance`); mergekit's ÷ N ranks the positions alike. Σ τ_i² is summed in float64 over flat
slices of NORM_SLICE entries, so the weights are right to the last fp32 bit on a 28M-entry tensor (a
half-precision merge, which follows mergekit's operations, sums in its dtype). The streamed form
(:func:`sce_streamed`) finds the variance threshold by radix select over slices and gives the same output.
"""

from __future__ import annotations

from collections.abc import Iterator
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
from skillmerge.merge.methods.sparsify import NORM_SLICE, top_k_mask
from skillmerge.merge.methods.task_arithmetic import require_base, task_vectors
from skillmerge.merge.methods.topk import TopKCut, TopKMask, top_k_cuts


class SceParams(MethodParams):
    """``select_topk`` in [0, 1] (default 1: no selection), as mergekit; ``int8_mask`` changes nothing."""

    select_topk: Annotated[float, Field(strict=True, ge=0, le=1)] = 1.0
    int8_mask: bool = False


def variance(deltas: torch.Tensor) -> torch.Tensor:
    """Per-entry unbiased variance of ``deltas`` across models (stacked on dim 0); zeros for one model.

    fp32 inputs: two passes in float64, rounded once — the value ``torch.var`` returns (it accumulates in
    double too), at ~30× its CPU speed, computed NORM_SLICE entries at a time. Each entry's value depends on
    that entry alone, so slices give the whole tensor's values bit for bit. Half precision: ``torch.var``
    in the dtype, as mergekit.
    """
    count = deltas.shape[0]
    if count <= 1:
        return torch.zeros_like(deltas[0])
    if half_precision(deltas):
        return deltas.var(dim=0)
    flat = deltas.reshape(count, -1)
    out = torch.empty(flat.shape[1], dtype=deltas.dtype, device=deltas.device)
    for start in range(0, flat.shape[1], NORM_SLICE):
        part = flat[:, start : start + NORM_SLICE].to(torch.float64)
        part -= part.mean(dim=0)
        out[start : start + NORM_SLICE] = part.square_().sum(dim=0).div_(count - 1)
    return out.reshape(deltas.shape[1:])


def select_count(nonzero: int, fraction: float) -> int:
    """SCE's k: ``fraction`` of the ``nonzero`` variances, as mergekit computes it (an int64 count tensor
    times a float is a float32 product in torch), rounded down."""
    return int(torch.tensor(nonzero, dtype=torch.int64) * fraction)


def variance_mask(deltas: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mask of the :func:`select_count` positions whose values vary most across ``deltas`` (stacked on
    dim 0)."""
    scores = variance(deltas)
    return top_k_mask(scores, select_count(int(torch.count_nonzero(scores)), fraction))


def _square_sums(stacked: torch.Tensor) -> torch.Tensor:
    """Σ τ_i² per model (dim 0) of a stacked slice, in float64."""
    return stacked.reshape(stacked.shape[0], -1).to(torch.float64).square().sum(dim=1)


def _weights(square_sums: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor | None:
    """w_i = mean(τ_i²) / Σ_j mean(τ_j²) in ``like``'s dtype, shaped to broadcast over a stacked slice;
    None when every τ_i is zero."""
    if n == 0:
        return None
    energy = square_sums / n
    total = energy.sum()
    if float(total) == 0:
        return None
    return (energy / total).to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _erase_and_mix(base: torch.Tensor, stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """θ_base + Σ_i w_i·τ_i·a_i / Σ_i w_i·a_i with TIES signs elected from Σ_i τ_i (entry by entry)."""
    elected = torch.where(stacked.sum(dim=0) >= 0, 1.0, -1.0)
    agree = torch.sign(stacked) == elected
    mixed = (stacked * weights * agree).sum(dim=0)
    divisor = (weights * agree).sum(dim=0)
    return base + mixed / torch.where(divisor == 0, 1.0, divisor)


def sce(inputs: TensorInputs, params: SceParams, rng: torch.Generator) -> torch.Tensor:
    """θ_base + the weighted, sign-agreeing mean of the variance-selected task vectors."""
    base = require_base(inputs)
    stacked = torch.stack(task_vectors(inputs))
    if params.select_topk < 1:
        stacked = stacked * variance_mask(stacked, params.select_topk)
    if half_precision(stacked):  # mergekit's order: a mean in the compute dtype
        energy = stacked.pow(2).reshape(stacked.shape[0], -1).mean(dim=1)
        if float(energy.sum()) == 0:
            return base.clone()
        weights = (energy / energy.sum()).reshape(-1, *([1] * base.dim()))
        return _erase_and_mix(base, stacked, weights)
    flat = stacked.reshape(stacked.shape[0], -1)
    square_sums = torch.zeros(stacked.shape[0], dtype=torch.float64)
    for start in range(0, flat.shape[1], NORM_SLICE):
        square_sums += _square_sums(flat[:, start : start + NORM_SLICE])
    fp32_weights = _weights(square_sums, base.numel(), stacked)
    if fp32_weights is None:
        return base.clone()
    return _erase_and_mix(base, stacked, fp32_weights)


def sce_streamed(slices: TensorSlices, params: SceParams, rng: torch.Generator) -> SliceMerge:
    """:func:`sce` in two phases over slices, the same output bit for bit (on the engine's slice size,
    which is NORM_SLICE, the float64 sums are the same numbers; on others they may differ in their last
    bit, which the fp32 weights almost never show).

    Phase 1: with selection, two counting passes of the variances give the exact top-k cut
    (:mod:`.topk`; the first also counts the nonzero variances k depends on), then one pass sums each
    model's selected τ_i²; phase 2 masks, weighs and mixes each slice. Only slices of N task vectors and
    their variances exist at any time.
    """
    if slices.base_flat is None:
        raise UsageError(f"tensor {slices.name}: this merge method needs a base model")
    n = slices.numel
    count = len(slices.model_flats)

    def stacked_slices() -> Iterator[tuple[int, int, torch.Tensor]]:
        for start, stop in slices.ranges():
            yield start, stop, torch.stack([slices.delta(i, start, stop) for i in range(count)])

    def variance_bits() -> Iterator[torch.Tensor]:
        for _, _, stacked in stacked_slices():
            yield variance(stacked).view(torch.int32)  # variances are ≥ +0: their bits order as they do

    select = params.select_topk < 1
    if select:
        (cut,) = top_k_cuts(variance_bits, n, lambda nonzero: [select_count(nonzero, params.select_topk)])
    else:
        cut = TopKCut(n, n)

    def selected(stacked: torch.Tensor, mask: TopKMask) -> torch.Tensor:
        return stacked * mask(variance(stacked).view(torch.int32)) if select else stacked

    mask = TopKMask(cut)
    square_sums = torch.zeros(count, dtype=torch.float64)
    for _, _, stacked in stacked_slices():
        square_sums += _square_sums(selected(stacked, mask))
    weights = _weights(square_sums, n, torch.empty(count, 1))
    mask = TopKMask(cut)

    def merge(start: int, stop: int) -> torch.Tensor:
        base = slices.base(start, stop)
        if weights is None:
            return base.clone()
        stacked = torch.stack([slices.delta(i, start, stop) for i in range(count)])
        return _erase_and_mix(base, selected(stacked, mask), weights)

    return SliceMerge(merge)


METHODS = (
    MergeMethod(
        name="sce",
        fn=sce,
        needs_base=True,
        params=SceParams,
        formula="θ = θ_base + Σ w_i·τ_i·a_i / Σ w_i·a_i, w_i ∝ mean(τ_i²), top-variance entries, TIES signs",
        streamed=sce_streamed,
    ),
)
