"""Model breadcrumbs (Davari & Belilovsky, 2023): drop each task vector's outliers and its small entries.

    τ_i' = τ_i on the band of magnitudes ranked (⌊γ_i·n⌋, ⌊γ_i·n⌋ + ⌊density_i·n⌋] from the top, else 0
    breadcrumbs:      θ = θ_base + λ·Σ_i w_i·τ_i'            (÷ Σ_i w_i if normalize)
    breadcrumbs_ties: θ = θ_base + λ·Σ_i w_i·τ_i'·a_i        (÷ Σ_i w_i·a_i if normalize; a_i as in TIES)

Per model: ``density`` (default 1: keep everything, γ ignored) and ``gamma`` (default 0.01), as mergekit;
when γ + density > 1, fewer outliers are dropped so the density is met. Defaults: normalize = False,
rescale = False, λ = 1. Where ⌊γ·n⌋ = 0 the band is kept, as in mergekit 0.1.5 (older mergekit zeroed the
whole task vector of such small tensors; see ``sparsify``). Registered from the table in :mod:`.family`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from skillmerge.merge.methods.base import TensorSlices
from skillmerge.merge.methods.sparsify import DensityParams, Gamma, band_sizes, outlier_band
from skillmerge.merge.methods.streaming import (
    KEEP_ALL,
    DrawStream,
    SliceSparsifier,
    delta_magnitude_bits,
    masked_survivors,
)
from skillmerge.merge.methods.task_arithmetic import GeneralizedParams
from skillmerge.merge.methods.topk import TopKMask, magnitude_bits, top_k_cuts


class BreadcrumbsParams(GeneralizedParams):
    """breadcrumbs / breadcrumbs_ties: normalize = False, rescale = False by default (mergekit)."""


class BreadcrumbsModelParams(DensityParams):
    """Per model: ``density`` in (0, 1], and ``gamma`` in [0, 1): the fraction of top magnitudes dropped."""

    gamma: Gamma = 0.01


def keep_band(
    delta: torch.Tensor, model: BreadcrumbsModelParams, params: GeneralizedParams, rng: torch.Generator
) -> torch.Tensor:
    """Breadcrumbs trim of one task vector: the magnitude band below the top γ; draws nothing."""
    return outlier_band(delta, model.density, model.gamma, params.rescale_mode)


def keep_band_streamed(
    slices: TensorSlices,
    index: int,
    model: BreadcrumbsModelParams,
    params: GeneralizedParams,
    stream: DrawStream,
) -> SliceSparsifier:
    """:func:`keep_band` over slices: both band edges from the same two counting passes, then the same
    mask (top n_top + n_keep and not top n_top, ties by position) and rescale slice by slice."""
    if model.density >= 1:
        return KEEP_ALL
    n = slices.numel
    n_keep, n_top = band_sizes(n, model.density, model.gamma)
    outer, inner = top_k_cuts(lambda: delta_magnitude_bits(slices, index), n, [n_top + n_keep, n_top])

    def new_mask() -> Callable[[torch.Tensor], torch.Tensor]:
        top_outer, top_inner = TopKMask(outer), TopKMask(inner)

        def band(delta: torch.Tensor) -> torch.Tensor:
            magnitudes = magnitude_bits(delta)
            return top_outer(magnitudes) & ~top_inner(magnitudes)

        return band

    return masked_survivors(slices, index, new_mask, model.density, params.rescale_mode, outer.finite)
