"""Nearswap: move θ_base towards a second model only where the two are already close.

Entry by entry, with the one model θ_1::

    w = clamp(t / |θ_base − θ_1|, 0, 1)          (= 1 where they are equal: t/0 = inf)
    θ = w·θ_1 + (1 − w)·θ_base

``t`` (required, ≥ 0) is the distance below which the model's value is taken whole; farther apart, the
model's pull falls off as t/distance. As mergekit's ``nearswap``.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from skillmerge.errors import UsageError
from skillmerge.merge.methods.base import MergeMethod, MethodParams, TensorInputs
from skillmerge.merge.methods.task_arithmetic import require_base
from skillmerge.merge.params import Number


class NearswapParams(MethodParams):
    """``t`` (required, ≥ 0): the distance up to which the model's value replaces the base's."""

    t: Annotated[Number, Field(ge=0)]


def nearswap(inputs: TensorInputs, params: NearswapParams, rng: torch.Generator) -> torch.Tensor:
    """w·θ_1 + (1 − w)·θ_base with w = clamp(t/|θ_base − θ_1|, 0, 1), entry by entry."""
    base = require_base(inputs)
    if len(inputs.models) != 1:
        raise UsageError(f"tensor {inputs.name}: nearswap takes exactly one model besides the base")
    (other,) = inputs.models
    distance = (base - other).abs()
    if params.t == 0:  # w = 0 wherever they differ (torch's t·(1/d) is 0·inf = NaN where 1/d overflows)
        weight = (distance == 0).to(base.dtype)
    else:  # equal entries: t/0 = inf → 1
        weight = torch.where(distance == 0, 1.0, (params.t / distance).clamp(0.0, 1.0))
    return weight * other + (1 - weight) * base


def nearswap_into(inputs: TensorInputs, params: NearswapParams, out: torch.Tensor) -> None:
    """:func:`nearswap` written into ``out`` with one scratch slice (the engine's in-place form): the same
    fp32 operations per entry (torch evaluates ``t / distance`` as ``t · (1/distance)``), the same bits."""
    base = require_base(inputs)
    if len(inputs.models) != 1:
        raise UsageError(f"tensor {inputs.name}: nearswap takes exactly one model besides the base")
    (other,) = inputs.models
    torch.sub(base, other, out=out)
    if params.t == 0:
        out.copy_(out == 0)  # the weight: 1 where equal, else 0
    else:
        out.abs_().reciprocal_().mul_(params.t).clamp_(0.0, 1.0)  # the weight; equal: t·inf = inf → 1
    rest = torch.neg(out).add_(1.0).mul_(base)  # (1 − w)·θ_base
    out.mul_(other).add_(rest)


METHODS = (
    MergeMethod(
        name="nearswap",
        fn=nearswap,
        needs_base=True,
        params=NearswapParams,
        min_models=1,
        max_models=1,
        formula="θ = w·θ_1 + (1−w)·θ_base, w = clamp(t/|θ_base − θ_1|, 0, 1)",
        elementwise=True,
        into=nearswap_into,
    ),
)
