"""Pairwise dot products of a tensor's flat inputs, summed in float64 slice by slice.

SLERP, NuSLERP and Model Stock mix their inputs with per-tensor coefficients computed from norms and dot
products (cos Ω = a·b / (‖a‖·‖b‖)); the mix itself is elementwise. :class:`Gram` accumulates those products
over flat slices in float64 — right to ~1e-15 on a 28M-entry tensor, where a float32 reduction drifts
by ~1e-6 and with the thread count — so a method computing its coefficients from it gets the same numbers
whether it sees the tensor whole (:func:`gram`, in slices of NORM_SLICE entries) or streamed by the
engine (slices of CHUNK_ELEMENTS, the same size), and the same output bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from skillmerge.merge.methods.sparsify import NORM_SLICE

_ROW = 1024  # products are summed per row of this many entries (one matmul each), then the rows in order


def _products(wide: torch.Tensor) -> torch.Tensor:
    """W·Wᵀ for a float64 [k, n] ``wide``, the same bits whatever the thread count: one small matmul per
    row of _ROW entries (each done by one thread; a single large matmul splits its sum by threads), then
    the rows' k × k results summed in a fixed order."""
    count, n = wide.shape
    whole = n // _ROW * _ROW
    stride = wide.stride(0)  # ``wide`` may be the first n columns of a wider buffer
    rows = wide.as_strided((whole // _ROW, count, _ROW), (_ROW, stride, 1))  # [rows, k, _ROW], a view
    total = (rows @ rows.transpose(1, 2)).sum(dim=0) if whole else wide.new_zeros(count, count)
    tail = wide[:, whole:]
    return total + tail @ tail.T


class Gram:
    """G[i][j] = v_i · v_j for ``count`` flat vectors, accumulated over slices given in any order."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._sums = [[0.0] * count for _ in range(count)]
        self._wide: torch.Tensor | None = None  # the float64 copy of one slice, reused slice after slice

    def add(self, parts: list[torch.Tensor]) -> None:
        """One slice of every vector (equal lengths)."""
        if len(parts) != self.count:
            raise ValueError(f"{len(parts)} slices for a Gram matrix of {self.count} vectors")
        if not parts[0].numel():
            return
        # fp32 products are exact in float64: only the sums round
        n, device = parts[0].numel(), parts[0].device
        if self._wide is None or self._wide.shape[1] < n or self._wide.device != device:
            self._wide = torch.empty(self.count, n, dtype=torch.float64, device=device)
        wide = self._wide[:, :n]
        for row, part in zip(wide, parts, strict=True):
            row.copy_(part.reshape(-1))
        products = _products(wide)
        for i, row in enumerate(products.tolist()):
            for j, value in enumerate(row):
                self._sums[i][j] += value

    def dot(self, i: int, j: int) -> float:
        return self._sums[i][j]

    def norm(self, i: int) -> float:
        return math.sqrt(self._sums[i][i])

    def finite(self) -> bool:
        """Whether every vector was finite. Σ v² of float32 entries cannot overflow float64 (≤ 2^256 each,
        fewer than 2^50 entries), so a diagonal sum is NaN/inf exactly when its vector holds a NaN/inf."""
        return all(math.isfinite(self._sums[i][i]) for i in range(self.count))


def combine(coefficients: Sequence[float], vectors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_i c_i·v_i (the mix of the Gram methods, once their coefficients are known): c_0·v_0, then each
    further product added in order — on whole tensors or on slices, the same operations per entry."""
    total = vectors[0] * coefficients[0]
    for vector, c in zip(vectors[1:], coefficients[1:], strict=True):
        total += vector * c
    return total


def combine_into(coefficients: Sequence[float], vectors: Sequence[torch.Tensor], out: torch.Tensor) -> None:
    """:func:`combine` written into ``out`` (one temporary instead of one per term), bitwise the same."""
    torch.mul(vectors[0], coefficients[0], out=out)
    for vector, c in zip(vectors[1:], coefficients[1:], strict=True):
        out += vector * c


def gram(vectors: list[torch.Tensor]) -> Gram:
    """The :class:`Gram` of whole tensors (flattened), summed over slices of NORM_SLICE entries."""
    flats = [vector.reshape(-1) for vector in vectors]
    total = Gram(len(flats))
    for start in range(0, flats[0].numel() if flats else 0, NORM_SLICE):
        total.add([flat[start : start + NORM_SLICE] for flat in flats])
    return total
