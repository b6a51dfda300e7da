"""Sparsifiers run over slices: what the streamed TIES, DARE, breadcrumbs and DELLA share.

A streamed sparsifier has two phases. Phase 1 (``prepare``, once per model, in model order) reads model
i's task vector slice by slice for whatever it needs from the whole tensor — a top-k threshold
(:mod:`.topk`), the norms of a norm rescale (:class:`.sparsify.NormSum`), the generator state where its
random draws begin — and returns phase 2, a :class:`SliceSparsifier` mapping τ_i on one slice to τ_i'
there, equal entry for entry to the whole-tensor sparsifier's output. Phase 2 is called on consecutive
slices in order (tie counts and random draws carry over).

Random draws: each model that drops entries at random takes its :class:`.draws.Draws` from the tensor's
generator in model order, as the whole-tensor sparsifiers do, and draws any slice by position, so phase 1
and phase 2 draw the same masks slice by slice without replaying the generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from skillmerge.merge.methods.base import TensorSlices
from skillmerge.merge.methods.draws import Draws
from skillmerge.merge.methods.sparsify import NormSum, RescaleNorm, rescale_survivors
from skillmerge.merge.methods.topk import magnitude_bits
from skillmerge.merge.params import ModelParams

NORMS = ("l1", "l2", "linf")


@dataclass(frozen=True)
class SliceSparsifier:
    """Phase 2 of one model's streamed sparsifier: ``apply(τ slice) → τ' slice``, slices in flat order,
    each a multiple of ``align`` entries (DELLA ranks within rows, so it needs whole rows).

    ``checked``: phase 1 saw every entry of τ_i in a statistic that a NaN/inf makes non-finite (the
    top-k counts, ‖τ_i‖ of a norm rescale), and it was finite — so θ_i and θ_base are finite there
    (τ_i = θ_i − θ_base is NaN/inf wherever either is).
    """

    apply: Callable[[torch.Tensor], torch.Tensor]
    align: int = 1
    checked: bool = False


KEEP_ALL = SliceSparsifier(lambda delta: delta)
"""The sparsifier of a model with density 1: τ' = τ, nothing drawn."""


class DrawStream:
    """The tensor's generator as the sparsifiers consume it: one :class:`.draws.Draws` per model that draws,
    taken in model order (the whole-tensor sparsifiers take theirs in the same order)."""

    def __init__(self, rng: torch.Generator) -> None:
        self._rng = rng

    def take(self) -> Draws:
        return Draws.take(self._rng)


class StreamedSparsifier(Protocol):
    """Phase 1 for model ``index``: its slices, its parameters, the method's parameters, the draw stream."""

    def __call__(
        self, slices: TensorSlices, index: int, model: ModelParams, params: object, stream: DrawStream
    ) -> SliceSparsifier: ...


_BIT_VALUES = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """A flat boolean mask at one bit per entry (uint8, little-endian bit order within each byte)."""
    padded = torch.zeros((mask.numel() + 7) // 8 * 8, dtype=torch.uint8)
    padded[: mask.numel()] = mask.reshape(-1)
    return (padded.view(-1, 8) * _BIT_VALUES).sum(dim=1, dtype=torch.uint8)


def unpack_mask(packed: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` entries of a mask packed by :func:`pack_mask`."""
    return ((packed.unsqueeze(1) & _BIT_VALUES) != 0).reshape(-1)[:count]


MaskFn = Callable[[torch.Tensor], torch.Tensor]
"""Keep-mask of one τ slice (stateful: slices in order)."""


def delta_magnitude_bits(slices: TensorSlices, index: int) -> Iterator[torch.Tensor]:
    """|τ_i| as int32 bits (:func:`.topk.magnitude_bits`), slice by slice: one pass of a top-k select."""
    for start, stop in slices.ranges():
        yield magnitude_bits(slices.delta(index, start, stop))


def slice_norms(
    slices: TensorSlices, index: int, mask: MaskFn, norm: Literal["l1", "l2", "linf"], align: int = 1
) -> tuple[float, float]:
    """(‖τ_i‖, ‖τ_i·mask‖) over the whole tensor, one pass of slices: a norm rescale's two norms."""
    before, after = NormSum(norm), NormSum(norm)
    for start, stop in slices.ranges(align):
        delta = slices.delta(index, start, stop)
        before.add(delta)
        after.add(delta * mask(delta))
    return before.value, after.value


def norms_checked(norms: tuple[float, float] | None) -> bool:
    """Whether :func:`slice_norms`' ‖τ_i‖ (over every entry) vouches that τ_i is finite."""
    return norms is not None and math.isfinite(norms[0])


def masked_survivors(
    slices: TensorSlices,
    index: int,
    new_mask: Callable[[], MaskFn],
    density: float,
    rescale: RescaleNorm | None,
    checked: bool = False,
) -> SliceSparsifier:
    """Phase 2 of a mask-then-rescale sparsifier (TIES, breadcrumbs): ``rescale_survivors`` per slice.

    ``new_mask()`` starts the mask over at the first slice; a norm rescale uses one mask for its norms
    pass and a fresh one for phase 2. ``checked``: the caller's phase 1 already vouched for τ_i.
    """
    norms = slice_norms(slices, index, new_mask(), rescale) if rescale in NORMS else None  # type: ignore[arg-type]
    mask = new_mask()
    return SliceSparsifier(
        lambda delta: rescale_survivors(delta, mask(delta), density, rescale, norms),
        checked=checked or norms_checked(norms),
    )
