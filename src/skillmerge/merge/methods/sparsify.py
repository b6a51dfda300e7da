"""Sparsifying task vectors, and TIES sign consensus: the building blocks of TIES, DARE and breadcrumbs.

All functions are pure: they return new tensors and never modify their inputs. Ties in magnitude are broken
by position (the lower flat index counts as larger), so every trim is deterministic for a given tensor.

Semantics follow mergekit's ``sparsify`` and ``get_mask``, with these deliberate differences:

- ``magnitude`` keeps max(1, ⌊density·n⌋) entries of a non-empty tensor, as mergekit 0.1.5 does (older
  mergekit stopped with an assertion where ⌊density·n⌋ = 0, and older skillmerge dropped the whole task
  vector there).
- ``outlier_band`` (breadcrumbs) with ⌊γ·n⌋ = 0 removes no outliers and keeps the band, as mergekit 0.1.5
  does (older mergekit's slice ``[n_bot:-0]`` was empty there and dropped the whole task vector of every
  tensor with fewer than 1/γ entries).
- ``rescale`` defaults to DARE's 1/density; mergekit (0.1.5 included) rescales to match the L1 norm
  instead, which ``rescale_norm="l1"`` selects (a mergekit YAML gets it, see ``mergekit_yaml``).
- The L1/L2 norms of a norm rescale are summed in float64, slice by slice (:class:`NormSum`): a float32
  ``vector_norm`` over a 28M-entry embedding is off by up to ~5% and changes with the thread count, and
  the streamed methods (:mod:`.streaming`) sum the same way over their own slices.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field

from skillmerge.merge.methods.base import ModelParams, half_precision
from skillmerge.merge.methods.draws import Draws

Density = Annotated[float, Field(strict=True, gt=0, le=1)]
"""Fraction of a task vector's entries to keep, in (0, 1]."""

Gamma = Annotated[float, Field(strict=True, ge=0, lt=1)]
"""Fraction of a task vector's largest-magnitude entries to drop (breadcrumbs), in [0, 1)."""

RescaleNorm = Literal["density", "l1", "l2", "linf"]
"""How survivors are rescaled: ×1/density (DARE), or to match the original's L1/L2/L∞ norm (mergekit)."""


class DensityParams(ModelParams):
    """Per model: ``density``, the fraction of τ_i's entries kept, in (0, 1] (default 1: keep all)."""

    density: Density = 1.0


# Below this norm a rescale is skipped (as mergekit does): the ratio would be noise.
_RESCALE_EPS = 1e-7


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of ``scores``; equal values: lower flat index first.

    Uses a selection (``kthvalue``, O(n)) instead of a full sort; the tie rule makes the result exact,
    deterministic and nested (``top_k_mask(s, k1) ⊇ top_k_mask(s, k2)`` for ``k1 ≥ k2``). Half-precision
    scores (``compute_dtype``) are ranked as mergekit ranks them: the first k of torch's descending sort.
    """
    flat = scores.reshape(-1)
    n = flat.numel()
    if k <= 0:
        return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    if half_precision(flat):
        # equal magnitudes are common in 16 bits; mergekit breaks their ties as torch's descending sort does
        mask = torch.zeros(n, dtype=torch.bool, device=scores.device)
        mask[torch.sort(flat, descending=True).indices[:k]] = True
        return mask.reshape(scores.shape)
    threshold = torch.kthvalue(flat, n - k + 1).values
    keep = flat > threshold
    at_threshold = flat == threshold
    missing = k - int(keep.sum())
    if int(at_threshold.sum()) > missing:
        at_threshold &= torch.cumsum(at_threshold, dim=0) <= missing
    return (keep | at_threshold).reshape(scores.shape)


# Slices over which a norm is summed; the streamed methods use the engine's slice size, which by default is
# this too, so their float64 partial sums, and the rescale factor, are the same numbers.
NORM_SLICE = 1 << 18


_SUM_ROW = 1024


def exact_order_sum(values: torch.Tensor) -> float:
    """Σ values in float64, in an order fixed by the size alone: rows of 1,024 entries (each summed by one
    thread), then the row sums. A flat ``sum`` splits the work by threads and its last bit moves with
    their count."""
    flat = values.reshape(-1)
    whole = flat.numel() // _SUM_ROW * _SUM_ROW
    rows = float(flat[:whole].view(-1, _SUM_ROW).sum(dim=1, dtype=torch.float64).sum()) if whole else 0.0
    return rows + float(flat[whole:].sum(dtype=torch.float64))


class NormSum:
    """‖x‖ (L1, L2 or L∞) accumulated over slices of x: float64 partial sums in a fixed order
    (:func:`exact_order_sum`), so the result does not depend on the thread count and a 28M-entry
    tensor's norm is right to ~1e-15, not ~1e-2."""

    def __init__(self, norm: Literal["l1", "l2", "linf"]) -> None:
        self.norm = norm
        self.total = 0.0

    def add(self, part: torch.Tensor) -> None:
        if not part.numel():
            return
        if self.norm == "linf":
            largest = float(part.abs().max())  # NaN if the part holds one
            if math.isnan(largest) or largest > self.total:  # a NaN total stays (Python's max drops NaN)
                self.total = largest
        elif self.norm == "l1":
            self.total += exact_order_sum(part.abs())  # |x| is exact in fp32; summed in float64
        else:
            self.total += exact_order_sum(part.to(torch.float64).square())

    @property
    def value(self) -> float:
        return math.sqrt(self.total) if self.norm == "l2" else self.total


def vector_norm(tensor: torch.Tensor, norm: Literal["l1", "l2", "linf"]) -> float:
    """‖tensor‖ by :class:`NormSum` over flat slices of NORM_SLICE entries."""
    flat = tensor.reshape(-1)
    total = NormSum(norm)
    for start in range(0, flat.numel(), NORM_SLICE):
        total.add(flat[start : start + NORM_SLICE])
    return total.value


def rescale_survivors(
    delta: torch.Tensor,
    mask: torch.Tensor,
    density: float,
    norm: RescaleNorm | None,
    norms: tuple[float, float] | None = None,
) -> torch.Tensor:
    """``delta·mask``, rescaled: ×1/density (``"density"``), or ×‖δ‖/‖δ·mask‖ for an L1/L2/L∞ norm.

    A norm rescale is skipped when either norm is below 1e-7 (nothing meaningful to match). ``norms``
    gives (‖δ‖, ‖δ·mask‖) when ``delta`` is a slice and the norms are the whole tensor's.
    """
    kept = delta * mask
    if norm is None:
        return kept
    if norm == "density":
        return kept / density
    before, after = norms if norms is not None else (vector_norm(delta, norm), vector_norm(kept, norm))
    if before < _RESCALE_EPS or after < _RESCALE_EPS:
        return kept
    return kept * (before / after)


def magnitude_count(n: int, density: float) -> int:
    """How many of ``n`` entries the TIES trim keeps: ⌊density·n⌋, but at least one of a non-empty tensor
    (a 32-entry norm at density 0.02 keeps its largest entry, as in mergekit 0.1.5)."""
    return max(1, int(density * n)) if n else 0


def magnitude(delta: torch.Tensor, density: float, rescale: RescaleNorm | None = None) -> torch.Tensor:
    """TIES trim: keep the :func:`magnitude_count` largest-magnitude entries of δ, zero the rest.

    ``density ≥ 1`` returns δ unchanged (no rescale either).
    """
    if density >= 1:
        return delta
    mask = top_k_mask(delta.abs(), magnitude_count(delta.numel(), density))
    return rescale_survivors(delta, mask, density, rescale)


def band_sizes(n: int, density: float, gamma: float) -> tuple[int, int]:
    """Breadcrumbs' (n_keep, n_top) for n entries: ⌊density·n⌋ kept below the ⌊γ·n⌋ dropped outliers,
    fewer outliers where both do not fit."""
    n_keep = int(density * n)
    return n_keep, min(int(gamma * n), n - n_keep)


def outlier_band(
    delta: torch.Tensor, density: float, gamma: float, rescale: RescaleNorm | None = None
) -> torch.Tensor:
    """Breadcrumbs trim: drop the ⌊γ·n⌋ largest magnitudes, keep the next ⌊density·n⌋, zero the rest.

    With n_top = ⌊γ·n⌋ and n_keep = ⌊density·n⌋: when n_top + n_keep > n, fewer outliers are dropped
    (n_top = n − n_keep) so the density is met. ``density ≥ 1`` returns δ unchanged, γ included (as
    mergekit).
    """
    if density >= 1:
        return delta
    n_keep, n_top = band_sizes(delta.numel(), density, gamma)
    magnitudes = delta.abs()
    mask = top_k_mask(magnitudes, n_top + n_keep) & ~top_k_mask(magnitudes, n_top)
    return rescale_survivors(delta, mask, density, rescale)


def random_keep_mask(shape: torch.Size, density: float, rng: torch.Generator) -> torch.Tensor:
    """Bernoulli(density) keep-mask from the next :class:`.draws.Draws` of ``rng`` (CPU tensor).

    The mask depends only on the generator's state and the shape, never on the thread count or platform,
    and equals the streamed merge's slice-by-slice masks.
    """
    count = math.prod(shape)
    return Draws.take(rng).keep(0, count, density).reshape(shape)


def random_drop(
    delta: torch.Tensor, density: float, rng: torch.Generator, rescale: RescaleNorm | None = "density"
) -> torch.Tensor:
    """DARE: drop each entry of δ with probability 1 − density, rescale survivors (by default ×1/density).

    E[result] = δ with the 1/density rescale. ``density ≥ 1`` returns δ unchanged and takes nothing
    from ``rng``.
    """
    if density >= 1:
        return delta
    mask = random_keep_mask(delta.shape, density, rng).to(delta.device)
    return rescale_survivors(delta, mask, density, rescale)


def elect_sign(weighted_deltas: list[torch.Tensor]) -> torch.Tensor:
    """TIES sign election by summed mass: s = +1 where Σ_i w_i·δ_i ≥ 0, else −1 (mergekit's "sum")."""
    total = torch.zeros_like(weighted_deltas[0])
    for weighted in weighted_deltas:
        total += weighted
    return torch.where(total >= 0, 1.0, -1.0).to(total.dtype)


def disjoint_sum(
    deltas: list[torch.Tensor], weights: list[float], *, with_divisor: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """TIES disjoint merge: (Σ_i w_i·δ_i·a_i, Σ_i w_i·a_i) with a_i = [sign(w_i·δ_i) = s]; the second is
    ``None`` when ``with_divisor`` is False (a merge that does not normalize never reads it).

    s is :func:`elect_sign` of the weighted deltas. Zero entries (trimmed or unchanged) have sign 0 and
    never agree, so they add to neither sum. Dividing the first by the second (where it is non-zero) is
    the disjoint mean.
    """
    if len(deltas) != len(weights):
        raise ValueError(f"{len(weights)} weights for {len(deltas)} task vectors")
    if half_precision(deltas[0]):
        mixed, divisor = _disjoint_sum_stacked(deltas, weights)
        return mixed, divisor if with_divisor else None
    # w_i·δ_i is recomputed in the second pass instead of kept in a list: the same values (and the same sum
    # as elect_sign's) with one full-size temporary alive instead of one per model. The passes are
    # arithmetic, not where()/masked_fill_()/== (each ~4× the cost of a multiply on CPU), with the same bits:
    # total starts at +0, so it is never −0 and copysign(1, total) is s; sign(w·δ)·s is exactly 1 where
    # they agree and −1 or ±0 elsewhere, so clamped at 0 it is a_i; w·δ·0 = ±0 adds nothing to a sum that
    # starts at +0 (and a non-finite w·δ makes the output non-finite either way).
    total = torch.zeros_like(deltas[0])
    for delta, weight in zip(deltas, weights, strict=True):
        total += delta * weight
    elected = torch.ones_like(total).copysign_(total)
    del total
    mixed = torch.zeros_like(elected)
    divisor = torch.zeros_like(elected) if with_divisor else None
    for delta, weight in zip(deltas, weights, strict=True):
        w_delta = delta * weight
        agree = torch.sign(w_delta).mul_(elected).clamp_min_(0.0)
        mixed += w_delta.mul_(agree)
        if divisor is not None:
            divisor += agree * weight
    return mixed, divisor


def _disjoint_sum_stacked(
    deltas: list[torch.Tensor], weights: list[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`disjoint_sum` in mergekit's half-precision order: weights rounded to the dtype, each sum one
    reduction over the stacked models."""
    sample = deltas[0]
    scale = torch.tensor(weights, dtype=sample.dtype, device=sample.device).view(-1, *[1] * sample.dim())
    weighted = torch.stack(deltas) * scale
    elected = torch.where(weighted.sum(dim=0) >= 0, 1.0, -1.0).to(sample.dtype)
    agree = torch.sign(weighted) == elected
    return (weighted * agree).sum(dim=0), (scale * agree).sum(dim=0)
