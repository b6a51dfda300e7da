"""Model Stock (Jang et al., 2024): interpolate from θ_base towards the average of N ≥ 2 fine-tunes.

With τ_i = θ_i − θ_base and cos θ the mean pairwise cosine similarity of the τ_i (over all i < j)::

    t = N·cos θ / (1 + (N − 1)·cos θ)
    θ = t·(1/N)·Σ_i θ_i + (1 − t)·θ_base

Per tensor (the flattened τ_i), or per row (last dimension) with ``filter_wise: true``. Cosines are
τ_i·τ_j / (max(‖τ_i‖, 1e-8)·max(‖τ_j‖, 1e-8)), as ``torch.nn.functional.cosine_similarity`` (so an
unchanged model gives cos 0 and t = 0); per tensor, from float64 sums (:mod:`.gram`), so the engine can
stream it — one pass for the products, then the mix slice by slice — with the same output. Per row, and
in half precision, the cosines are torch's. Model weights play no part (mergekit's model_stock has none).
"""

from __future__ import annotations

import math

import torch

from skillmerge.errors import UsageError
from skillmerge.merge.methods.base import (
    MergeMethod,
    MethodParams,
    SliceMerge,
    TensorInputs,
    TensorSlices,
    half_precision,
)
from skillmerge.merge.methods.gram import Gram, gram
from skillmerge.merge.methods.task_arithmetic import require_base, task_vectors


class ModelStockParams(MethodParams):
    """``filter_wise`` (default False, as mergekit): one t per row instead of one per tensor."""

    filter_wise: bool = False


COSINE_EPS = 1e-8


def _check_count(name: str, n: int) -> None:
    if n < 2:
        raise UsageError(f"tensor {name}: model_stock needs at least two models besides the base")


def interpolation(products: Gram) -> float:
    """t = N·cos/(1 + (N − 1)·cos) from the task vectors' Gram matrix (inf/nan where the denominator is
    0: the output check then refuses the tensor)."""
    n = products.count
    norms = [max(products.norm(i), COSINE_EPS) for i in range(n)]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    cos = sum(products.dot(i, j) / (norms[i] * norms[j]) for i, j in pairs) / len(pairs)
    denominator = 1 + (n - 1) * cos
    if denominator == 0:
        return math.copysign(math.inf, cos) if cos else math.nan
    return n * cos / denominator


def _mix(t: float | torch.Tensor, models: list[torch.Tensor], base: torch.Tensor) -> torch.Tensor:
    """t·mean(θ_i) + (1 − t)·θ_base, entry by entry."""
    average = torch.zeros_like(base)
    for model in models:
        average += model
    average /= len(models)
    return t * average + (1 - t) * base


def _mix_into(t: float, models: list[torch.Tensor], base: torch.Tensor, out: torch.Tensor) -> None:
    """:func:`_mix` with a scalar t, written into ``out``: the same fp32 operations in the same order."""
    out.zero_()
    for model in models:
        out += model
    out /= len(models)
    out.mul_(t)
    out.add_((1 - t) * base)


def model_stock(inputs: TensorInputs, params: ModelStockParams, rng: torch.Generator) -> torch.Tensor:
    """t·mean(θ_i) + (1 − t)·θ_base with t from the mean pairwise cosine of the task vectors."""
    base = require_base(inputs)
    deltas = task_vectors(inputs)
    n = len(deltas)
    _check_count(inputs.name, n)
    rowwise = params.filter_wise and base.dim() > 0
    if not (rowwise or half_precision(base)):
        return _mix(interpolation(gram(deltas)), inputs.models, base)
    vectors = [d if rowwise else d.reshape(-1) for d in deltas]
    total = torch.zeros(vectors[0].shape[:-1], dtype=base.dtype, device=base.device)
    for i in range(n):
        for j in range(i + 1, n):
            total += torch.nn.functional.cosine_similarity(vectors[i], vectors[j], dim=-1, eps=COSINE_EPS)
    cos = total / (n * (n - 1) / 2)
    t = n * cos / (1 + (n - 1) * cos)
    return _mix(t.unsqueeze(-1) if rowwise else t, inputs.models, base)


def model_stock_streamed(slices: TensorSlices, params: ModelStockParams, rng: torch.Generator) -> SliceMerge:
    """:func:`model_stock` over slices: one pass for the Gram matrix of the τ_i, then the mix per slice
    (per row: computed whole, handed out in slices)."""
    n = len(slices.model_flats)
    _check_count(slices.name, n)
    if params.filter_wise and len(slices.shape) > 0:
        return SliceMerge.of(model_stock(slices.whole(), params, rng))
    products = Gram(n)
    for start, stop in slices.ranges():
        products.add([slices.delta(i, start, stop) for i in range(n)])
    t = interpolation(products)

    def merge(start: int, stop: int) -> torch.Tensor:
        models = [slices.model(i, start, stop) for i in range(n)]
        return _mix(t, models, slices.base(start, stop))

    def into(start: int, stop: int, out: torch.Tensor) -> None:
        _mix_into(t, [slices.model(i, start, stop) for i in range(n)], slices.base(start, stop), out)

    # τ_i = θ_i − θ_base is NaN/inf wherever θ_base or θ_i is: the norms of the τ_i vouch for every input
    return SliceMerge(merge, into=into, inputs_checked=products.finite())


METHODS = (
    MergeMethod(
        name="model_stock",
        fn=model_stock,
        needs_base=True,
        params=ModelStockParams,
        min_models=2,
        formula="θ = t·mean_i θ_i + (1−t)·θ_base, t = N·cos/(1+(N−1)·cos), cos = mean pairwise cos(τ_i, τ_j)",
        streamed=model_stock_streamed,
        checks_inputs=True,
        light=True,
    ),
)
