"""WiSE-FT: interpolate from θ_G towards a continued fine-tune, θ = θ_G + ω·(θ_CFT − θ_G)."""

from __future__ import annotations

import torch

from skillmerge.merge.methods.base import MergeMethod, MethodParams, TensorInputs
from skillmerge.merge.methods.task_arithmetic import require_base, task_vectors
from skillmerge.merge.params import Number


class WiseFtParams(MethodParams):
    """``omega``: the interpolation ω; when unset, the one model's weight is ω."""

    omega: Number | None = None


def wise_ft(inputs: TensorInputs, params: WiseFtParams, rng: torch.Generator) -> torch.Tensor:
    """θ = θ_G + ω·(θ_CFT − θ_G), with base = θ_G and the one model = θ_CFT.

    ω = 0 gives θ_G, ω = 1 gives θ_CFT; ω is ``omega`` when set, else the model's weight.
    """
    base = require_base(inputs)
    (delta,) = task_vectors(inputs)
    omega = params.omega if params.omega is not None else inputs.weights[0]
    return base + omega * delta


def wise_ft_into(inputs: TensorInputs, params: WiseFtParams, out: torch.Tensor) -> None:
    """:func:`wise_ft` written into ``out``: (θ_CFT − θ_G)·ω + θ_G, the same fp32 steps in place."""
    base = require_base(inputs)
    (model,) = inputs.models
    omega = params.omega if params.omega is not None else inputs.weights[0]
    torch.sub(model, base, out=out)
    out.mul_(omega)
    out.add_(base)


METHODS = (
    MergeMethod(
        name="wise_ft",
        fn=wise_ft,
        needs_base=True,
        params=WiseFtParams,
        min_models=1,
        max_models=1,
        formula="θ = θ_G + ω (θ_CFT − θ_G)",
        elementwise=True,
        into=wise_ft_into,
    ),
)
