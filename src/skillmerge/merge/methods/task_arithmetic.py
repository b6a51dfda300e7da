"""The generalized task-arithmetic form that task arithmetic, TIES, DARE and breadcrumbs share.

The generalized form (mergekit's "generalized task arithmetic") is, per tensor:

    τ_i' = sparsify_i(τ_i)                            τ_i = θ_i − θ_base; identity for plain task arithmetic
    m    = Σ_i w_i·τ_i'                               or the TIES disjoint sum Σ_i w_i·τ_i'·a_i
    d    = Σ_i w_i                                    or Σ_i w_i·a_i (a_i: entry agrees with the elected sign)
    θ    = θ_base + λ·(m / d if normalize else m)

Where |d| < 1e-8 (plain) or d = 0 (consensus), d is taken as 1, as in mergekit. The paper's PTM is task
arithmetic with θ_G at weight 1 plus each skill model at weight ω_k, τ against the pretrained base. The
variants are registered from the table in :mod:`.family`.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from skillmerge.errors import UsageError
from skillmerge.merge.methods.base import (
    CACHE_BLOCK,
    MethodParams,
    ModelParams,
    TensorInputs,
    cache_blocks,
    half_precision,
    task_vector,
)
from skillmerge.merge.methods.sparsify import RescaleNorm, disjoint_sum
from skillmerge.merge.params import Number

P = TypeVar("P", bound=ModelParams)


class GeneralizedParams(MethodParams):
    """Global parameters shared by the task-arithmetic family (names as in mergekit).

    ``lambda`` (alias of ``lambda_``) scales the merged task vector after normalisation. ``rescale`` and
    ``rescale_norm`` control how sparsified survivors are rescaled (no effect without sparsification).
    ``int8_mask`` is accepted so mergekit configs load; in mergekit it only stores the TIES mask as int8
    to save memory, and it changes no value here either.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    lambda_: Number = Field(default=1.0, alias="lambda")
    normalize: bool = False
    rescale: bool = False
    rescale_norm: RescaleNorm = "density"
    int8_mask: bool = False

    @property
    def rescale_mode(self) -> RescaleNorm | None:
        """The rescale to apply to sparsified survivors, or None."""
        return self.rescale_norm if self.rescale else None


class TaskArithmeticParams(GeneralizedParams):
    """task_arithmetic: ``lambda`` = 1.0, ``normalize`` = False (mergekit's defaults)."""


def require_base(inputs: TensorInputs) -> torch.Tensor:
    """θ_base, or a one-line error naming the tensor when the engine passed none."""
    if inputs.base is None:
        raise UsageError(f"tensor {inputs.name}: this merge method needs a base model")
    return inputs.base


def task_vectors(inputs: TensorInputs) -> list[torch.Tensor]:
    """τ_i = θ_i − θ_base: the engine's deltas when given, else computed from the models."""
    if inputs.deltas is not None:
        return inputs.deltas
    base = require_base(inputs)
    return [task_vector(model, base) for model in inputs.models]


def per_model_params(inputs: TensorInputs, schema: type[P]) -> list[P]:
    """Model i's validated parameters; the schema's defaults where the engine passed none."""
    return checked_model_params(inputs.name, inputs.model_params, len(inputs.models), schema)


def checked_model_params(name: str, given: list[BaseModel], count: int, schema: type[P]) -> list[P]:
    """``given`` checked against ``schema`` for ``count`` models (defaults when empty)."""
    if not given:
        return [schema() for _ in range(count)]
    if len(given) != count:
        raise UsageError(f"tensor {name}: {len(given)} parameter sets for {count} models")
    checked: list[P] = []
    for params in given:
        if not isinstance(params, schema):
            raise TypeError(f"expected {schema.__name__} per model, got {type(params).__name__}")
        checked.append(params)
    return checked


def _disjoint_mix(deltas: list[torch.Tensor], weights: list[float], normalize: bool) -> torch.Tensor:
    """The TIES disjoint sum m, ÷ d where d ≠ 0 with ``normalize``."""
    mixed, divisor = disjoint_sum(deltas, weights, with_divisor=normalize)
    if divisor is not None:
        mixed /= torch.where(divisor == 0, 1.0, divisor)
    return mixed


def combine_task_vectors(
    base: torch.Tensor,
    deltas: list[torch.Tensor],
    weights: list[float],
    *,
    consensus: bool,
    normalize: bool,
    lambda_: float,
) -> torch.Tensor:
    """θ_base + λ·m (or λ·m/d): the generalized form in the module docstring, on given (sparsified) τ_i'."""
    if len(deltas) != len(weights):
        raise UsageError(f"{len(weights)} weights for {len(deltas)} task vectors")
    if not deltas:
        return base.clone()
    if consensus:
        mixed = _disjoint_mix(deltas, weights, normalize)
    elif half_precision(base):
        # mergekit's order: the weights rounded to the dtype, one reduction over the stacked products
        scale = torch.tensor(weights, dtype=base.dtype, device=base.device).view(-1, *[1] * base.dim())
        mixed = (torch.stack(deltas) * scale).sum(dim=0)
        scale_sum = scale.sum()
        if normalize and abs(float(scale_sum)) >= 1e-8:
            mixed /= scale_sum
    else:
        mixed = torch.zeros_like(base)
        for delta, weight in zip(deltas, weights, strict=True):
            mixed += delta * weight
        total = sum(weights)
        if normalize and abs(total) >= 1e-8:
            mixed /= total
    if lambda_ != 1:
        mixed *= lambda_
    return base + mixed


def combine_deltas_into(
    out: torch.Tensor,
    base: torch.Tensor,
    deltas: list[torch.Tensor],
    weights: list[float],
    *,
    consensus: bool,
    normalize: bool,
    lambda_: float,
) -> None:
    """``out`` = :func:`combine_task_vectors` on fp32 τ_i', bitwise, in place: without consensus the same
    sums from zero in the same order, with no temporaries (scaling the given ``deltas`` in place: the
    streamed sparsifiers hand over fresh slices); with consensus the disjoint sum, then θ_base + λ·m
    written straight into ``out``."""
    if len(deltas) != len(weights):
        raise UsageError(f"{len(weights)} weights for {len(deltas)} task vectors")
    if not deltas:
        out.copy_(base)
        return
    if consensus:
        mixed = _disjoint_mix(deltas, weights, normalize)
        if lambda_ != 1:
            mixed *= lambda_
        torch.add(base, mixed, out=out)
        return
    out.zero_()
    for delta, weight in zip(deltas, weights, strict=True):
        out += delta.mul_(weight)
    total = sum(weights)
    if normalize and abs(total) >= 1e-8:
        out /= total
    if lambda_ != 1:
        out *= lambda_
    out += base


def combine_models_into(
    out: torch.Tensor,
    models: list[torch.Tensor],
    weights: list[float],
    base: torch.Tensor | None,
    *,
    normalize: bool,
    lambda_: float,
) -> None:
    """``out`` = :func:`combine_task_vectors` over τ_i = θ_i − θ_base (``base`` given), bitwise, in place.

    Without ``base`` it is the linear soup's Σ w_i·θ_i (÷ Σ w_i with ``normalize``), bitwise
    :func:`~skillmerge.merge.methods.linear.linear`. The reference sums start from a zero tensor, so the
    first term gets ``+ 0.0`` (which turns a −0 into +0, as ``0 + x`` does); everything else is the same
    fp32 operation per entry in the same order, on ``out`` and one scratch slice.
    """
    if len(models) != len(weights):
        raise UsageError(f"{len(weights)} weights for {len(models)} task vectors")
    if not models:
        if base is None:
            raise UsageError("no models to combine")
        out.copy_(base)
        return
    blocks = cache_blocks(out, *models, *([] if base is None else [base]))
    if blocks is None:  # shaped whole tensors: one piece
        scratch = torch.empty_like(out) if len(models) > 1 else out
        _combine_block(out, models, weights, base, scratch, normalize=normalize, lambda_=lambda_)
        return
    scratch = (
        torch.empty(min(out.numel(), CACHE_BLOCK), dtype=out.dtype, device=out.device)
        if len(models) > 1
        else None
    )
    for start, stop in blocks:  # every pass over one block, then the next: the operands stay in cache
        part = out[start:stop]
        _combine_block(
            part,
            [model[start:stop] for model in models],
            weights,
            None if base is None else base[start:stop],
            part if scratch is None else scratch[: stop - start],
            normalize=normalize,
            lambda_=lambda_,
        )


def _combine_block(
    out: torch.Tensor,
    models: list[torch.Tensor],
    weights: list[float],
    base: torch.Tensor | None,
    scratch: torch.Tensor,
    *,
    normalize: bool,
    lambda_: float,
) -> None:
    """:func:`combine_models_into` on one block, with ``scratch`` its size (``out`` itself for one model)."""
    for i, (model, weight) in enumerate(zip(models, weights, strict=True)):
        term = out if i == 0 else scratch
        if base is not None:
            torch.sub(model, base, out=term)
            term.mul_(weight)
        else:
            torch.mul(model, weight, out=term)
        if i == 0:
            out.add_(0.0)
        else:
            out.add_(scratch)
    total = sum(weights)
    if normalize and (base is None or abs(total) >= 1e-8):
        out.div_(total)
    if lambda_ != 1:
        out.mul_(lambda_)
    if base is not None:
        out.add_(base)
