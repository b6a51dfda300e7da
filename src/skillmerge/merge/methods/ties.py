"""TIES-merging (Yadav et al., 2023): trim, elect sign, disjoint merge.

    τ_i' = top-density_i magnitudes of τ_i                      (per-model density, default 1 = no trim;
                                                                 at least one entry kept)
    s    = sign(Σ_i w_i·τ_i')                                   (+1 where the sum is 0)
    a_i  = [sign(w_i·τ_i') = s]                                 (trimmed and zero entries never agree)
    θ    = θ_base + λ·Σ_i w_i·τ_i'·a_i / Σ_i w_i·a_i           (without the division if normalize: false)

Defaults as mergekit's ``ties``: normalize = True, rescale = False, λ = 1. Registered from the table in
:mod:`.family`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from skillmerge.merge.methods.base import TensorSlices
from skillmerge.merge.methods.sparsify import DensityParams, magnitude, magnitude_count
from skillmerge.merge.methods.streaming import (
    KEEP_ALL,
    DrawStream,
    SliceSparsifier,
    delta_magnitude_bits,
    masked_survivors,
)
from skillmerge.merge.methods.task_arithmetic import GeneralizedParams
from skillmerge.merge.methods.topk import TopKMask, magnitude_bits, top_k_cuts


class TiesParams(GeneralizedParams):
    """ties: ``normalize`` = True by default (mergekit)."""

    normalize: bool = True


def trim_by_magnitude(
    delta: torch.Tensor, model: DensityParams, params: GeneralizedParams, rng: torch.Generator
) -> torch.Tensor:
    """TIES trim of one task vector: its top-density magnitudes (rescaled if ``rescale``); draws nothing."""
    return magnitude(delta, model.density, params.rescale_mode)


def trim_by_magnitude_streamed(
    slices: TensorSlices, index: int, model: DensityParams, params: GeneralizedParams, stream: DrawStream
) -> SliceSparsifier:
    """:func:`trim_by_magnitude` over slices: the exact top-k threshold in two counting passes, then the
    same mask (ties by position) and rescale slice by slice."""
    if model.density >= 1:
        return KEEP_ALL
    n = slices.numel
    (cut,) = top_k_cuts(lambda: delta_magnitude_bits(slices, index), n, [magnitude_count(n, model.density)])

    def new_mask() -> Callable[[torch.Tensor], torch.Tensor]:
        top = TopKMask(cut)
        return lambda delta: top(magnitude_bits(delta))

    return masked_survivors(slices, index, new_mask, model.density, params.rescale_mode, cut.finite)
