"""Spherical linear interpolation between two models, tensor by tensor.

With Ω the angle between the flattened tensors a and b (cos Ω = a·b / (‖a‖·‖b‖)):

    slerp(t; a, b) = sin((1 − t)·Ω)/sin Ω · a + sin(t·Ω)/sin Ω · b

and plain lerp, (1 − t)·a + t·b, when |cos Ω| > 0.9995 (nearly colinear: the formula is ill-conditioned).
As in mergekit, a tensor whose norm is ≤ 1e-8 is not normalised before the cosine is taken, and t = 0
gives the first endpoint (mergekit's ``base_model``).

Norms and the dot product are summed in float64 (:mod:`.gram`; mergekit sums in float32, so the
coefficients agree to ~1e-7): the streamed form (:func:`slerp_streamed`) reads the endpoints slice by slice
for them, then mixes slice by slice, bitwise the whole-tensor result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

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
from skillmerge.merge.methods.gram import Gram, combine, combine_into, gram
from skillmerge.merge.params import Number

COLINEAR_DOT = 0.9995
NORM_EPS = 1e-8

Endpoint = Callable[[int, int], torch.Tensor]
"""One slerp endpoint's flat fp32 entries on [start, stop)."""


class SlerpParams(MethodParams):
    """``t`` (required): 0 gives the first endpoint, 1 the second."""

    t: Number


def slerp_coefficients(
    t: float, norm_a: float, norm_b: float, dot: float, colinear_dot: float = COLINEAR_DOT
) -> tuple[float, float]:
    """(c_a, c_b) with slerp(t; a, b) = c_a·a + c_b·b, from ‖a‖, ‖b‖ and a·b (1 − t, t when colinear).

    NaN coefficients when a norm or the dot product is not finite (a NaN/inf input, or task vectors that
    overflowed float32): the mix is then NaN and the engine refuses the tensor, naming the input."""
    if not all(math.isfinite(x) for x in (norm_a, norm_b, dot)):
        return math.nan, math.nan
    cos = dot / ((norm_a if norm_a > NORM_EPS else 1.0) * (norm_b if norm_b > NORM_EPS else 1.0))
    if abs(cos) > colinear_dot:
        return 1 - t, t
    omega = math.acos(max(-1.0, min(1.0, cos)))
    sin_omega = math.sin(omega)
    return math.sin((1 - t) * omega) / sin_omega, math.sin(t * omega) / sin_omega


def slerp_tensors(
    t: float, a: torch.Tensor, b: torch.Tensor, colinear_dot: float = COLINEAR_DOT
) -> torch.Tensor:
    """slerp(t; a, b) as in the module docstring; fp32 tensors, norms and scalars in double.

    ``colinear_dot`` is the |cos Ω| above which lerp is used (nuslerp passes a tighter one). Half-precision
    endpoints (``compute_dtype``) are mixed in float32 with float32 norms and the result rounded back, as
    mergekit does.
    """
    if half_precision(a):
        a32, b32 = a.float(), b.float()
        norms = float(torch.linalg.vector_norm(a32)), float(torch.linalg.vector_norm(b32))
        dot = float(torch.dot(a32.reshape(-1), b32.reshape(-1)))
        return combine(slerp_coefficients(t, *norms, dot, colinear_dot), [a32, b32]).to(a.dtype)
    products = gram([a, b])
    return combine(
        slerp_coefficients(t, products.norm(0), products.norm(1), products.dot(0, 1), colinear_dot), [a, b]
    )


def streamed_slerp(
    t: float, slices: TensorSlices, first: Endpoint, second: Endpoint, colinear_dot: float
) -> SliceMerge:
    """:func:`slerp_tensors` of two endpoints read slice by slice: one pass for the norms and the dot
    product, then the mix per slice (the same fp32 operations on every entry).

    ``inputs_checked`` says the two endpoints were finite (their norms are); the caller clears it when
    an input of the tensor is not behind either endpoint."""
    products = Gram(2)
    for start, stop in slices.ranges():
        products.add([first(start, stop), second(start, stop)])
    coefficients = slerp_coefficients(t, products.norm(0), products.norm(1), products.dot(0, 1), colinear_dot)

    def endpoints(start: int, stop: int) -> list[torch.Tensor]:
        return [first(start, stop), second(start, stop)]

    return SliceMerge(
        lambda start, stop: combine(coefficients, endpoints(start, stop)),
        into=lambda start, stop, out: combine_into(coefficients, endpoints(start, stop), out),
        inputs_checked=products.finite(),
    )


def _endpoint_error(name: str, models: int, base: bool) -> UsageError:
    return UsageError(
        f"tensor {name}: slerp needs exactly two endpoints (two models, or a base and one model), "
        f"got {models} model(s){' and a base' if base else ''}"
    )


def slerp(inputs: TensorInputs, params: SlerpParams, rng: torch.Generator) -> torch.Tensor:
    """slerp(t; θ_1, θ_2) for two models, or slerp(t; θ_base, θ_1) for a base and one model.

    With two models any θ_base is unused; the order of the models decides which one t = 0 gives.
    """
    if len(inputs.models) == 2:
        first, second = inputs.models
    elif len(inputs.models) == 1 and inputs.base is not None:
        first, second = inputs.base, inputs.models[0]
    else:
        raise _endpoint_error(inputs.name, len(inputs.models), inputs.base is not None)
    return slerp_tensors(params.t, first, second)


def slerp_streamed(slices: TensorSlices, params: SlerpParams, rng: torch.Generator) -> SliceMerge:
    """:func:`slerp` over slices (see :func:`streamed_slerp`)."""
    count = len(slices.model_flats)
    if count == 2:
        endpoints = (lambda a, b: slices.model(0, a, b)), (lambda a, b: slices.model(1, a, b))
    elif count == 1 and slices.base_flat is not None:
        endpoints = slices.base, (lambda a, b: slices.model(0, a, b))
    else:
        raise _endpoint_error(slices.name, count, slices.base_flat is not None)
    merge = streamed_slerp(params.t, slices, *endpoints, COLINEAR_DOT)
    if count == 2 and slices.base_flat is not None:  # an unused base: phase 1 never read it
        merge = dataclasses.replace(merge, inputs_checked=False)
    return merge


METHODS = (
    MergeMethod(
        name="slerp",
        fn=slerp,
        needs_base=False,
        params=SlerpParams,
        min_models=1,
        max_models=2,
        formula="θ = sin((1−t)Ω)/sin Ω·a + sin(tΩ)/sin Ω·b (lerp when colinear)",
        streamed=slerp_streamed,
        checks_inputs=True,
        light=True,
    ),
)
