"""DELLA (Deep et al., 2024): drop task-vector entries at random, keeping large ones more often, then merge.

Per model i and per row r of τ_i (the last dimension; a 1-D tensor is one row) of n entries, with
rank_j ∈ {0, …, n−1} the ascending rank of |τ_ij| within its row (equal magnitudes: lower index first)::

    p_j  = density_i − ε_i + 2·ε_i·rank_j/(n − 1)              (p_j = density_i when n = 1)
    τ_i' = m_i ⊙ τ_i · c_i,   m_ij ~ Bernoulli(p_j)           c_i = ‖τ_i‖₁/‖m_i ⊙ τ_i‖₁ (rescale, l1)
    della:        θ = θ_base + λ·Σ_i w_i·τ_i'·a_i / Σ_i w_i·a_i     (a_i: TIES sign agreement; normalize)
    della_linear: θ = θ_base + λ·Σ_i w_i·τ_i'                       (÷ Σ_i w_i if normalize)

Keep probabilities run linearly from density − ε (smallest magnitude) to density + ε (largest), so the
expected fraction kept is the density. Defaults are mergekit's: ε = 0.15, density = 1 (keep all, draw
nothing), rescale = True with the L1 rescale mergekit uses (``rescale_norm: density`` divides each
survivor by its own p_j instead, as in the DELLA paper), normalize = True for ``della`` and False for
``della_linear``, λ = 1. Validation refuses density ± ε outside [0, 1] (mergekit fails mid-merge there),
and a one-entry row keeps with p = density (mergekit fails there too).

Masks come from the engine's per-tensor ``rng`` only, one model after another: the same seed gives the same
masks whatever the thread count, but not mergekit's masks (it draws from the global torch RNG).
Registered from the table in :mod:`.family`.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field, model_validator

from skillmerge.merge.methods.sparsify import DensityParams, RescaleNorm, rescale_survivors
from skillmerge.merge.methods.task_arithmetic import GeneralizedParams

Epsilon = Annotated[float, Field(strict=True, ge=0, le=1)]
"""Half-width of DELLA's keep-probability range, in [0, 1]."""


class DellaParams(GeneralizedParams):
    """della: normalize = True, rescale = True with the L1 rescale (mergekit's defaults)."""

    normalize: bool = True
    rescale: bool = True
    rescale_norm: RescaleNorm = "l1"


class DellaLinearParams(DellaParams):
    """della_linear: as ``della`` but normalize = False (mergekit)."""

    normalize: bool = False


class DellaModelParams(DensityParams):
    """Per model: ``density`` in (0, 1] and ``epsilon`` (default 0.15) with density ± ε inside [0, 1]."""

    epsilon: Epsilon = 0.15

    @model_validator(mode="after")
    def _probabilities_in_range(self) -> DellaModelParams:
        if self.density < 1 and not (self.density - self.epsilon >= 0 and self.density + self.epsilon <= 1):
            raise ValueError(
                f"epsilon: density ± epsilon must lie in [0, 1] (density {self.density}, "
                f"epsilon {self.epsilon})"
            )
        return self


def keep_probabilities(delta: torch.Tensor, density: float, epsilon: float) -> torch.Tensor:
    """p_j = density − ε + 2ε·rank_j/(n − 1), ranking |δ| ascending within each row (last dimension)."""
    rows = delta.reshape(-1, delta.shape[-1]) if delta.dim() > 0 else delta.reshape(1, 1)
    n = rows.shape[-1]
    if n <= 1:
        return torch.full(delta.shape, density, dtype=delta.dtype, device=delta.device)
    order = torch.argsort(rows.abs(), dim=-1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(n, device=delta.device).expand_as(order))
    probabilities = (density - epsilon) + (2 * epsilon / (n - 1)) * ranks.to(delta.dtype)
    return probabilities.reshape(delta.shape)


def magnitude_sample(
    delta: torch.Tensor, model: DellaModelParams, params: GeneralizedParams, rng: torch.Generator
) -> torch.Tensor:
    """DELLA on one task vector: keep entry j with probability p_j, rescale; density 1 draws nothing."""
    if model.density >= 1:
        return delta
    probabilities = keep_probabilities(delta, model.density, model.epsilon)
    uniform = torch.rand(delta.shape, generator=rng, device=rng.device, dtype=torch.float32)
    mask = uniform.to(delta.device) < probabilities
    mode = params.rescale_mode
    if mode == "density":  # the paper's rescale: each survivor by its own keep probability
        return torch.where(mask, delta / probabilities, 0.0)
    return rescale_survivors(delta, mask, model.density, mode)
