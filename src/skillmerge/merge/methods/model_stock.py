"""Model Stock (Jang et al., 2024): interpolate from θ_base towards the average of N ≥ 2 fine-tunes.

With τ_i = θ_i − θ_base and cos θ the mean pairwise cosine similarity of the τ_i (over all i < j)::

    t = N·cos θ / (1 + (N − 1)·cos θ)
    θ = t·(1/N)·Σ_i θ_i + (1 − t)·θ_base

Per tensor (the flattened τ_i), or per row (last dimension) with ``filter_wise: true``. Cosines use
``torch.nn.functional.cosine_similarity`` (norms clamped at 1e-8, so an unchanged model gives cos 0 and
t = 0). Model weights play no part (mergekit's model_stock has none).
"""

from __future__ import annotations

import torch

from skillmerge.errors import UsageError
from skillmerge.merge.methods.base import MergeMethod, MethodParams, TensorInputs
from skillmerge.merge.methods.task_arithmetic import require_base, task_vectors


class ModelStockParams(MethodParams):
    """``filter_wise`` (default False, as mergekit): one t per row instead of one per tensor."""

    filter_wise: bool = False


def model_stock(inputs: TensorInputs, params: ModelStockParams, rng: torch.Generator) -> torch.Tensor:
    """t·mean(θ_i) + (1 − t)·θ_base with t from the mean pairwise cosine of the task vectors."""
    base = require_base(inputs)
    deltas = task_vectors(inputs)
    n = len(deltas)
    if n < 2:
        raise UsageError(f"tensor {inputs.name}: model_stock needs at least two models besides the base")
    rowwise = params.filter_wise and base.dim() > 0
    vectors = [d if rowwise else d.reshape(-1) for d in deltas]
    total = torch.zeros(vectors[0].shape[:-1], dtype=base.dtype, device=base.device)
    for i in range(n):
        for j in range(i + 1, n):
            total += torch.nn.functional.cosine_similarity(vectors[i], vectors[j], dim=-1)
    cos = total / (n * (n - 1) / 2)
    t = n * cos / (1 + (n - 1) * cos)
    if rowwise:
        t = t.unsqueeze(-1)
    average = torch.zeros_like(base)
    for model in inputs.models:
        average += model
    average /= n
    return t * average + (1 - t) * base


METHODS = (
    MergeMethod(
        name="model_stock",
        fn=model_stock,
        needs_base=True,
        params=ModelStockParams,
        min_models=2,
        formula="θ = t·mean_i θ_i + (1−t)·θ_base, t = N·cos/(1+(N−1)·cos), cos = mean pairwise cos(τ_i, τ_j)",
    ),
)
