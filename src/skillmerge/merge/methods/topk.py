"""Exact top-k of magnitudes over slices: the kept set of :func:`.sparsify.top_k_mask`, in O(slice) memory.

The k-th largest |x| is found by a two-level radix select on float bit patterns (for non-negative floats
the int32 bit pattern orders as the value does, and ``abs`` turns −0.0 into +0.0):

    pass 1: count the top 16 bits of every |x| (65,536 buckets) → the bucket b holding the k-th largest,
            and how many entries lie in higher buckets
    pass 2: count the low 15 bits of the entries in bucket b → the exact k-th largest value t, and
            how many entries exceed it

The mask then keeps |x| > t and the first k − #{|x| > t} entries equal to t in flat order — ``top_k_mask``'s
tie rule — with a running count carried from slice to slice, so slices must be visited in order. Several
k share the two passes (breadcrumbs needs two). A NaN's bits rank above inf, so a cut over non-finite
magnitudes is meaningless; the first pass tells (``TopKCut.finite``), and the merge engine then names the
non-finite input instead of using the cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

_LOW_BITS = 15
_HIGH_BUCKETS = 1 << 16  # |x| < 2^31 as int32 bits, so its top 16 bits index 65,536 buckets
_LOW_BUCKETS = 1 << _LOW_BITS
_LOW_MASK = _LOW_BUCKETS - 1
_NON_FINITE_BUCKET = 0x7F800000 >> _LOW_BITS  # inf's bits and above (NaN): never a finite magnitude's bucket


def magnitude_bits(values: torch.Tensor) -> torch.Tensor:
    """|values| (float32) as int32 bit patterns: ordered as the magnitudes are."""
    return values.abs().view(torch.int32)


@dataclass(frozen=True)
class TopKCut:
    """The ``k`` largest of ``n`` magnitudes: every entry above ``threshold`` (int32 bits of the k-th
    largest) and the first ``ties`` entries equal to it. ``finite``: the counting passes ran and saw no
    NaN/inf (their bit patterns, from 0x7F800000 up, fill the top histogram buckets), so every magnitude
    was finite; False when no pass ran or one was not."""

    k: int
    n: int
    threshold: int = 0
    ties: int = 0
    finite: bool = False


def _kth_from_top(counts: torch.Tensor, rank: int) -> tuple[int, int]:
    """(bucket holding the ``rank``-th largest entry, entries in higher buckets) for a histogram."""
    from_top = counts.flip(0).cumsum(0)  # from_top[j]: entries in the top j + 1 buckets
    j = int(torch.searchsorted(from_top, torch.tensor([rank], dtype=from_top.dtype)))
    bucket = counts.numel() - 1 - j
    return bucket, int(from_top[j]) - int(counts[bucket])


def top_k_cuts(
    bit_slices: Callable[[], Iterable[torch.Tensor]],
    n: int,
    ks: Sequence[int] | Callable[[int], Sequence[int]],
) -> list[TopKCut]:
    """The exact cut for each k over ``n`` magnitudes, whose bits ``bit_slices()`` yields slice by slice.

    ``ks`` may be a function of the number of nonzero magnitudes (SCE counts its k among the nonzero
    variances), which the first pass counts. ``bit_slices`` is called once per pass (twice at most; never
    when every given k is ≤ 0 or ≥ n).
    """
    of_nonzero = callable(ks)
    if not of_nonzero:
        inside = sorted({k for k in ks if 0 < k < n})
        if not inside:
            return [TopKCut(k, n) for k in ks]
    high = torch.zeros(_HIGH_BUCKETS, dtype=torch.int64)
    zeros = 0
    for bits in bit_slices():
        high += torch.bincount((bits >> _LOW_BITS).reshape(-1), minlength=_HIGH_BUCKETS)
        if of_nonzero:
            zeros += int((bits == 0).sum())
    finite = int(high[_NON_FINITE_BUCKET:].sum()) == 0
    if callable(ks):
        ks = ks(n - zeros)
        inside = sorted({k for k in ks if 0 < k < n})
        if not inside:
            return [TopKCut(k, n, finite=finite) for k in ks]
    located = {k: _kth_from_top(high, k) for k in inside}
    buckets = sorted({bucket for bucket, _ in located.values()})
    low = {bucket: torch.zeros(_LOW_BUCKETS, dtype=torch.int64) for bucket in buckets}
    for bits in bit_slices():
        bits = bits.reshape(-1)
        high_bits = bits >> _LOW_BITS
        for bucket in buckets:
            inside_bucket = bits[high_bits == bucket] & _LOW_MASK
            low[bucket] += torch.bincount(inside_bucket, minlength=_LOW_BUCKETS)
    cuts: dict[int, TopKCut] = {}
    for k, (bucket, above_bucket) in located.items():
        value, above_value = _kth_from_top(low[bucket], k - above_bucket)
        threshold = (bucket << _LOW_BITS) | value
        cuts[k] = TopKCut(k, n, threshold, k - above_bucket - above_value, finite)
    return [cuts.get(k, TopKCut(k, n, finite=finite)) for k in ks]


class TopKMask:
    """The boolean mask of a :class:`TopKCut`, one slice at a time, in flat order."""

    def __init__(self, cut: TopKCut) -> None:
        self.cut = cut
        self._ties_left = cut.ties

    def __call__(self, bits: torch.Tensor) -> torch.Tensor:
        if self.cut.k <= 0:
            return torch.zeros(bits.shape, dtype=torch.bool, device=bits.device)
        if self.cut.k >= self.cut.n:
            return torch.ones(bits.shape, dtype=torch.bool, device=bits.device)
        keep = bits > self.cut.threshold
        at_threshold = bits == self.cut.threshold
        count = int(at_threshold.sum())
        if count > self._ties_left:
            flat = at_threshold.reshape(-1)
            flat &= torch.cumsum(flat, dim=0) <= self._ties_left
        self._ties_left -= min(count, self._ties_left)
        return keep | at_threshold
