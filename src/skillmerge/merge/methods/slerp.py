"""Spherical linear interpolation between two models, tensor by tensor.

With Ω the angle between the flattened tensors a and b (cos Ω = a·b / (‖a‖·‖b‖)):

    slerp(t; a, b) = sin((1 − t)·Ω)/sin Ω · a + sin(t·Ω)/sin Ω · b

and plain lerp, (1 − t)·a + t·b, when |cos Ω| > 0.9995 (nearly colinear: the formula is ill-conditioned).
As in mergekit, a tensor whose norm is ≤ 1e-8 is not normalised before the cosine is taken, and t = 0
gives the first endpoint (mergekit's ``base_model``).
"""

from __future__ import annotations

import math

import torch

from skillmerge.errors import UsageError
from skillmerge.merge.methods.base import MergeMethod, MethodParams, TensorInputs, half_precision
from skillmerge.merge.params import Number

COLINEAR_DOT = 0.9995
NORM_EPS = 1e-8


class SlerpParams(MethodParams):
    """``t`` (required): 0 gives the first endpoint, 1 the second."""

    t: Number


def slerp_tensors(
    t: float, a: torch.Tensor, b: torch.Tensor, colinear_dot: float = COLINEAR_DOT
) -> torch.Tensor:
    """slerp(t; a, b) as in the module docstring; fp32 tensors, scalar coefficients in double.

    ``colinear_dot`` is the |cos Ω| above which lerp is used (nuslerp passes a tighter one). Half-precision
    endpoints (``compute_dtype``) are mixed in float32 and the result rounded back, as mergekit does.
    """
    if half_precision(a):
        return slerp_tensors(t, a.float(), b.float(), colinear_dot).to(a.dtype)
    norm_a = float(torch.linalg.vector_norm(a))
    norm_b = float(torch.linalg.vector_norm(b))
    dot = float(torch.dot(a.reshape(-1), b.reshape(-1)))
    cos = dot / ((norm_a if norm_a > NORM_EPS else 1.0) * (norm_b if norm_b > NORM_EPS else 1.0))
    if abs(cos) > colinear_dot:
        return (1 - t) * a + t * b
    omega = math.acos(max(-1.0, min(1.0, cos)))
    sin_omega = math.sin(omega)
    return (math.sin((1 - t) * omega) / sin_omega) * a + (math.sin(t * omega) / sin_omega) * b


def slerp(inputs: TensorInputs, params: SlerpParams, rng: torch.Generator) -> torch.Tensor:
    """slerp(t; θ_1, θ_2) for two models, or slerp(t; θ_base, θ_1) for a base and one model.

    With two models any θ_base is unused; the order of the models decides which one t = 0 gives.
    """
    if len(inputs.models) == 2:
        first, second = inputs.models
    elif len(inputs.models) == 1 and inputs.base is not None:
        first, second = inputs.base, inputs.models[0]
    else:
        raise UsageError(
            f"tensor {inputs.name}: slerp needs exactly two endpoints (two models, or a base and one model), "
            f"got {len(inputs.models)} model(s){' and a base' if inputs.base is not None else ''}"
        )
    return slerp_tensors(params.t, first, second)


METHODS = (
    MergeMethod(
        name="slerp",
        fn=slerp,
        needs_base=False,
        params=SlerpParams,
        min_models=1,
        max_models=2,
        formula="θ = sin((1−t)Ω)/sin Ω·a + sin(tΩ)/sin Ω·b (lerp when colinear)",
    ),
)
