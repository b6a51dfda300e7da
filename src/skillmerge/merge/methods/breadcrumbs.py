"""Model breadcrumbs (Davari & Belilovsky, 2023): drop each task vector's outliers and its small entries.

    τ_i' = τ_i on the band of magnitudes ranked (⌊γ_i·n⌋, ⌊γ_i·n⌋ + ⌊density_i·n⌋] from the top, else 0
    breadcrumbs:      θ = θ_base + λ·Σ_i w_i·τ_i'            (÷ Σ_i w_i if normalize)
    breadcrumbs_ties: θ = θ_base + λ·Σ_i w_i·τ_i'·a_i        (÷ Σ_i w_i·a_i if normalize; a_i as in TIES)

Per model: ``density`` (default 1: keep everything, γ ignored) and ``gamma`` (default 0.01), as mergekit;
when γ + density > 1, fewer outliers are dropped so the density is met. Defaults: normalize = False,
rescale = False, λ = 1. Difference from mergekit: where ⌊γ·n⌋ = 0 the band is kept (mergekit zeroes the
whole task vector of such small tensors; see ``sparsify``).
"""

from __future__ import annotations

import torch

from skillmerge.merge.methods.base import MergeMethod, TensorInputs
from skillmerge.merge.methods.sparsify import DensityParams, Gamma, outlier_band
from skillmerge.merge.methods.task_arithmetic import (
    GeneralizedParams,
    combine_task_vectors,
    per_model_params,
    require_base,
    task_vectors,
)


class BreadcrumbsParams(GeneralizedParams):
    """breadcrumbs / breadcrumbs_ties: normalize = False, rescale = False by default (mergekit)."""


class BreadcrumbsModelParams(DensityParams):
    """Per model: ``density`` in (0, 1], and ``gamma`` in [0, 1): the fraction of top magnitudes dropped."""

    gamma: Gamma = 0.01


def _banded(inputs: TensorInputs, params: BreadcrumbsParams) -> list[torch.Tensor]:
    models = per_model_params(inputs, BreadcrumbsModelParams)
    return [
        outlier_band(delta, model.density, model.gamma, params.rescale_mode)
        for delta, model in zip(task_vectors(inputs), models, strict=True)
    ]


def breadcrumbs(inputs: TensorInputs, params: BreadcrumbsParams, rng: torch.Generator) -> torch.Tensor:
    """θ_base + λ·Σ_i w_i·band(τ_i): task arithmetic on outlier-and-small-trimmed task vectors."""
    base = require_base(inputs)
    return combine_task_vectors(
        base,
        _banded(inputs, params),
        inputs.weights,
        consensus=False,
        normalize=params.normalize,
        lambda_=params.lambda_,
    )


def breadcrumbs_ties(inputs: TensorInputs, params: BreadcrumbsParams, rng: torch.Generator) -> torch.Tensor:
    """θ_base + λ·disjoint_sum(band(τ_i)): breadcrumbs trimming with TIES sign consensus."""
    base = require_base(inputs)
    return combine_task_vectors(
        base,
        _banded(inputs, params),
        inputs.weights,
        consensus=True,
        normalize=params.normalize,
        lambda_=params.lambda_,
    )


METHODS = (
    MergeMethod(
        name="breadcrumbs",
        fn=breadcrumbs,
        needs_base=True,
        params=BreadcrumbsParams,
        model_params=BreadcrumbsModelParams,
        doc="θ_base + λ·Σ w_i·band_γ,density(τ_i)",
    ),
    MergeMethod(
        name="breadcrumbs_ties",
        fn=breadcrumbs_ties,
        needs_base=True,
        params=BreadcrumbsParams,
        model_params=BreadcrumbsModelParams,
        doc="θ_base + λ·TIES-consensus sum of band_γ,density(τ_i)",
    ),
)
