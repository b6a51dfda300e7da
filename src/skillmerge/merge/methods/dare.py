"""DARE (Yu et al., 2023): drop delta entries at random, rescale survivors, then merge.

    τ_i' = m_i ⊙ τ_i / density_i,   m_i ~ Bernoulli(density_i) entrywise   (E[τ_i'] = τ_i)
    dare_linear: θ = θ_base + λ·Σ_i w_i·τ_i'             (÷ Σ_i w_i if normalize)
    dare_ties:   θ = θ_base + λ·Σ_i w_i·τ_i'·a_i         (÷ Σ_i w_i·a_i if normalize; a_i as in TIES)

Defaults as mergekit: normalize = False, rescale = True, λ = 1, density = 1 per model.

Determinism: the masks come only from the ``rng`` the engine seeds per tensor, one key per model in model
order (models with density 1 take none), drawn by position (:mod:`.draws`) — so the output depends on the
seed, not on thread count, platform, slicing or other tensors. mergekit draws from the global torch RNG
in its own task order, so the same seed does not give mergekit's masks; and current mergekit rescales to
the L1 norm (``rescale_norm: l1`` here) where the DARE paper, and this default, divide by density.
Registered from the table in :mod:`.family`.
"""

from __future__ import annotations

import torch

from skillmerge.merge.methods.base import TensorSlices
from skillmerge.merge.methods.sparsify import DensityParams, random_drop, rescale_survivors
from skillmerge.merge.methods.streaming import (
    KEEP_ALL,
    NORMS,
    DrawStream,
    SliceSparsifier,
    norms_checked,
    slice_norms,
)
from skillmerge.merge.methods.task_arithmetic import GeneralizedParams


class DareParams(GeneralizedParams):
    """dare_linear / dare_ties: ``rescale`` = True (×1/density) by default."""

    rescale: bool = True


def drop_at_random(
    delta: torch.Tensor, model: DensityParams, params: GeneralizedParams, rng: torch.Generator
) -> torch.Tensor:
    """DARE on one task vector: a Bernoulli(density) mask drawn from ``rng`` (nothing drawn at density 1)."""
    return random_drop(delta, model.density, rng, params.rescale_mode)


def drop_at_random_streamed(
    slices: TensorSlices, index: int, model: DensityParams, params: GeneralizedParams, stream: DrawStream
) -> SliceSparsifier:
    """:func:`drop_at_random` over slices: the same mask, drawn slice by slice by position. An L1/L2/L∞
    rescale draws the mask once, for its norms, and keeps it (one byte per entry of this tensor) for
    phase 2 instead of drawing it again."""
    density = model.density
    if density >= 1:
        return KEEP_ALL
    draws = stream.take()
    rescale = params.rescale_mode
    drawn = 0  # entries drawn so far (slices come in flat order)

    def draw(delta: torch.Tensor) -> torch.Tensor:
        nonlocal drawn
        mask = draws.keep(drawn, delta.numel(), density).view(delta.shape)
        drawn += delta.numel()
        return mask

    if rescale in NORMS:
        kept = torch.empty(slices.numel, dtype=torch.bool)

        def draw_and_keep(delta: torch.Tensor) -> torch.Tensor:
            start = drawn
            mask = draw(delta)
            kept[start : start + mask.numel()] = mask.reshape(-1)
            return mask

        norms = slice_norms(slices, index, draw_and_keep, rescale)  # type: ignore[arg-type]
        used = 0

        def kept_mask(delta: torch.Tensor) -> torch.Tensor:
            nonlocal used
            mask = kept[used : used + delta.numel()].view(delta.shape)
            used += delta.numel()
            return mask

        return SliceSparsifier(
            lambda delta: rescale_survivors(delta, kept_mask(delta), density, rescale, norms),
            checked=norms_checked(norms),
        )
    return SliceSparsifier(lambda delta: rescale_survivors(delta, draw(delta), density, rescale))
