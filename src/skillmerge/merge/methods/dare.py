"""DARE (Yu et al., 2023): drop delta entries at random, rescale survivors, then merge.

    τ_i' = m_i ⊙ τ_i / density_i,   m_i ~ Bernoulli(density_i) entrywise   (E[τ_i'] = τ_i)
    dare_linear: θ = θ_base + λ·Σ_i w_i·τ_i'             (÷ Σ_i w_i if normalize)
    dare_ties:   θ = θ_base + λ·Σ_i w_i·τ_i'·a_i         (÷ Σ_i w_i·a_i if normalize; a_i as in TIES)

Defaults as mergekit: normalize = False, rescale = True, λ = 1, density = 1 per model.

Determinism: the masks come only from the ``rng`` the engine seeds per tensor, one per model in model
order (models with density 1 draw nothing), via ``torch.rand`` — so the output depends on the seed, not
on thread count or on other tensors. mergekit draws from the global torch RNG in its own task order, so
the same seed does not give mergekit's masks; and current mergekit rescales to the L1 norm
(``rescale_norm: l1`` here) where the DARE paper, and this default, divide by density.
"""

from __future__ import annotations

import torch

from skillmerge.merge.methods.base import MergeMethod, TensorInputs
from skillmerge.merge.methods.sparsify import DensityParams, random_drop
from skillmerge.merge.methods.task_arithmetic import (
    GeneralizedParams,
    combine_task_vectors,
    per_model_params,
    require_base,
    task_vectors,
)


class DareParams(GeneralizedParams):
    """dare_linear / dare_ties: ``rescale`` = True (×1/density) by default."""

    rescale: bool = True


def dropped_task_vectors(
    inputs: TensorInputs, params: DareParams, rng: torch.Generator
) -> list[torch.Tensor]:
    """τ_i' for every model, masks drawn from ``rng`` in model order."""
    return [
        random_drop(delta, model.density, rng, params.rescale_mode)
        for delta, model in zip(task_vectors(inputs), per_model_params(inputs, DensityParams), strict=True)
    ]


def dare_linear(inputs: TensorInputs, params: DareParams, rng: torch.Generator) -> torch.Tensor:
    """θ_base + λ·Σ_i w_i·DARE(τ_i): task arithmetic on randomly dropped, rescaled task vectors."""
    base = require_base(inputs)
    return combine_task_vectors(
        base,
        dropped_task_vectors(inputs, params, rng),
        inputs.weights,
        consensus=False,
        normalize=params.normalize,
        lambda_=params.lambda_,
    )


def dare_ties(inputs: TensorInputs, params: DareParams, rng: torch.Generator) -> torch.Tensor:
    """θ_base + λ·disjoint_sum(DARE(τ_i)): TIES sign consensus on randomly dropped task vectors."""
    base = require_base(inputs)
    return combine_task_vectors(
        base,
        dropped_task_vectors(inputs, params, rng),
        inputs.weights,
        consensus=True,
        normalize=params.normalize,
        lambda_=params.lambda_,
    )


METHODS = (
    MergeMethod(
        name="dare_linear",
        fn=dare_linear,
        needs_base=True,
        params=DareParams,
        model_params=DensityParams,
        doc="θ_base + λ·Σ w_i·(Bernoulli(density) ⊙ τ_i / density)",
    ),
    MergeMethod(
        name="dare_ties",
        fn=dare_ties,
        needs_base=True,
        params=DareParams,
        model_params=DensityParams,
        doc="θ_base + λ·TIES-consensus sum of DARE-dropped τ_i",
    ),
)
