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

Masks come from the engine's per-tensor ``rng`` only, one key per model in model order, drawn by position
(:mod:`.draws`): the same seed gives the same masks whatever the thread count, platform or slicing, but
not mergekit's masks (it draws from the global torch RNG).
Registered from the table in :mod:`.family`.
"""

from __future__ import annotations

from collections import deque
from typing import Annotated

import torch
from pydantic import Field, model_validator

from skillmerge.merge.methods.base import TensorSlices
from skillmerge.merge.methods.draws import Draws
from skillmerge.merge.methods.row_order import stable_row_order
from skillmerge.merge.methods.sparsify import DensityParams, RescaleNorm, rescale_survivors
from skillmerge.merge.methods.streaming import (
    KEEP_ALL,
    NORMS,
    DrawStream,
    SliceSparsifier,
    norms_checked,
    pack_mask,
    slice_norms,
    unpack_mask,
)
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
    # p at each ascending rank, then placed where that rank's entry sits: the same arithmetic on the same
    # rank values as computing p from a rank tensor, one scatter instead of two.
    by_rank = torch.arange(n, device=delta.device).to(delta.dtype)
    by_rank = (density - epsilon) + (2 * epsilon / (n - 1)) * by_rank
    order = stable_row_order(rows.abs())
    probabilities = torch.empty_like(rows).scatter_(-1, order.to(rows.device), by_rank.expand_as(rows))
    return probabilities.reshape(delta.shape)


def _sample_mask(
    delta: torch.Tensor, model: DellaModelParams, draws: Draws, start: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep probabilities, keep mask) of whole rows of δ, the entries at flat positions ``start`` on."""
    probabilities = keep_probabilities(delta, model.density, model.epsilon)
    uniform = draws.uniform(start, delta.numel()).view(delta.shape)
    return probabilities, uniform.to(delta.device) < probabilities


def _survivors(
    delta: torch.Tensor,
    probabilities: torch.Tensor,
    mask: torch.Tensor,
    density: float,
    rescale: RescaleNorm | None,
    norms: tuple[float, float] | None = None,
) -> torch.Tensor:
    if rescale == "density":  # the paper's rescale: each survivor by its own keep probability
        return torch.where(mask, delta / probabilities, 0.0)
    return rescale_survivors(delta, mask, density, rescale, norms)


def magnitude_sample(
    delta: torch.Tensor, model: DellaModelParams, params: GeneralizedParams, rng: torch.Generator
) -> torch.Tensor:
    """DELLA on one task vector: keep entry j with probability p_j, rescale; density 1 draws nothing."""
    if model.density >= 1:
        return delta
    probabilities, mask = _sample_mask(delta, model, Draws.take(rng))
    return _survivors(delta, probabilities, mask, model.density, params.rescale_mode)


def magnitude_sample_streamed(
    slices: TensorSlices, index: int, model: DellaModelParams, params: GeneralizedParams, stream: DrawStream
) -> SliceSparsifier:
    """:func:`magnitude_sample` over slices of whole rows (ranks are per row), the same uniforms drawn
    slice by slice by position.

    An L1/L2/L∞ rescale needs ‖m ⊙ τ‖ before any slice is rescaled: phase 1 samples the mask once for its
    norms and keeps it packed at one bit per entry (n/8 bytes: ranking every row a second time would cost
    more than the rest of the merge); phase 2 then only unpacks it.
    """
    if model.density >= 1:
        return KEEP_ALL
    row = slices.row
    draws = stream.take()
    rescale = params.rescale_mode
    drawn = 0  # entries drawn so far (slices of whole rows, in flat order)

    def sample(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal drawn
        probabilities, mask = _sample_mask(rows, model, draws, drawn)
        drawn += rows.numel()
        return probabilities, mask

    if rescale in NORMS:
        packed: deque[torch.Tensor] = deque()

        def sampled(delta: torch.Tensor) -> torch.Tensor:
            mask = sample(delta.reshape(-1, row))[1].reshape(-1)
            packed.append(pack_mask(mask))
            return mask

        norms = slice_norms(slices, index, sampled, rescale, align=row)  # type: ignore[arg-type]

        def unpacked(delta: torch.Tensor) -> torch.Tensor:
            mask = unpack_mask(packed.popleft(), delta.numel())
            return rescale_survivors(delta, mask, model.density, rescale, norms)

        return SliceSparsifier(unpacked, align=row, checked=norms_checked(norms))

    def apply(delta: torch.Tensor) -> torch.Tensor:
        rows = delta.reshape(-1, row)
        probabilities, mask = sample(rows)
        return _survivors(rows, probabilities, mask, model.density, rescale).reshape(-1)

    return SliceSparsifier(apply, align=row)
