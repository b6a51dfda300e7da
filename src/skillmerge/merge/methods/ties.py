"""TIES-merging (Yadav et al., 2023): trim, elect sign, disjoint merge.

    τ_i' = top-density_i magnitudes of τ_i                      (per-model density, default 1 = no trim)
    s    = sign(Σ_i w_i·τ_i')                                   (+1 where the sum is 0)
    a_i  = [sign(w_i·τ_i') = s]                                 (trimmed and zero entries never agree)
    θ    = θ_base + λ·Σ_i w_i·τ_i'·a_i / Σ_i w_i·a_i           (without the division if normalize: false)

Defaults as mergekit's ``ties``: normalize = True, rescale = False, λ = 1. Registered from the table in
:mod:`.family`.
"""

from __future__ import annotations

import torch

from skillmerge.merge.methods.sparsify import DensityParams, magnitude
from skillmerge.merge.methods.task_arithmetic import GeneralizedParams


class TiesParams(GeneralizedParams):
    """ties: ``normalize`` = True by default (mergekit)."""

    normalize: bool = True


def trim_by_magnitude(
    delta: torch.Tensor, model: DensityParams, params: GeneralizedParams, rng: torch.Generator
) -> torch.Tensor:
    """TIES trim of one task vector: its top-density magnitudes (rescaled if ``rescale``); draws nothing."""
    return magnitude(delta, model.density, params.rescale_mode)
