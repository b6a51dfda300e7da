"""NuSLERP: SLERP between two models with the fraction taken from their weights, optionally on task vectors.

With weights w_1, w_2 and t = w_2 / (w_1 + w_2)::

    without a base:  θ = slerp(t; θ_1, θ_2)
    with a base:     θ = θ_base + slerp(t; θ_1 − θ_base, θ_2 − θ_base)

slerp is :func:`.slerp.slerp_tensors`, but with lerp only where the vectors are colinear to float precision
(|cos Ω| > 1 − 1e-6; ``slerp`` switches at 0.9995), as mergekit's nuslerp. ``nuslerp_flatten`` (default True)
interpolates the flattened tensors; with ``nuslerp_flatten: false`` every vector along the last dimension
is interpolated on its own, or every vector along the first dimension with ``nuslerp_row_wise: true``
(mergekit's naming; a 1-D tensor is one vector either way).

Flattened, the engine streams it (:func:`.slerp.streamed_slerp` on θ_i or τ_i slices); per vector, the
streamed form computes the tensor whole.
"""

from __future__ import annotations

import torch

from skillmerge.errors import UsageError
from skillmerge.merge.methods.base import MergeMethod, MethodParams, SliceMerge, TensorInputs, TensorSlices
from skillmerge.merge.methods.slerp import NORM_EPS, slerp_tensors, streamed_slerp
from skillmerge.merge.methods.task_arithmetic import task_vectors

# nuslerp keeps the spherical formula much closer to colinear than slerp's 0.9995 (measured on mergekit 0.1.5:
# it still slerps at 1 − cos ≈ 1e-5); below 1e-6 the two formulas differ by less than float32 resolution.
COLINEAR_DOT = 1 - 1e-6


class NuSlerpParams(MethodParams):
    """``nuslerp_flatten`` (default True) and ``nuslerp_row_wise`` (default False), as mergekit."""

    nuslerp_flatten: bool = True
    nuslerp_row_wise: bool = False


def slerp_vectors(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """slerp(t; a, b) for every pair of vectors along the last dimension at once (lerp where colinear)."""
    unit_a = a / torch.linalg.vector_norm(a, dim=-1, keepdim=True).clamp_min(NORM_EPS)
    unit_b = b / torch.linalg.vector_norm(b, dim=-1, keepdim=True).clamp_min(NORM_EPS)
    cos = (unit_a * unit_b).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin_omega = torch.sin(omega)
    colinear = cos.abs() > COLINEAR_DOT
    safe_sin = torch.where(colinear, 1.0, sin_omega)
    spherical = (torch.sin((1 - t) * omega) / safe_sin) * a + (torch.sin(t * omega) / safe_sin) * b
    return torch.where(colinear, (1 - t) * a + t * b, spherical)


def _fraction(name: str, count: int, weights: list[float]) -> float:
    """t = w_2/(w_1 + w_2), or a one-line error naming the tensor."""
    if count != 2:
        raise UsageError(f"tensor {name}: nuslerp takes exactly two models, got {count}")
    w_1, w_2 = weights
    if w_1 + w_2 == 0:
        raise UsageError(f"tensor {name}: nuslerp weights sum to 0, t = w_2/(w_1 + w_2) is undefined")
    return w_2 / (w_1 + w_2)


def nuslerp(inputs: TensorInputs, params: NuSlerpParams, rng: torch.Generator) -> torch.Tensor:
    """slerp between the two models (or their task vectors, when there is a base) at t = w_2/(w_1 + w_2)."""
    t = _fraction(inputs.name, len(inputs.models), inputs.weights)
    first, second = task_vectors(inputs) if inputs.base is not None else inputs.models
    if params.nuslerp_flatten or first.dim() <= 1:
        merged = slerp_tensors(t, first, second, colinear_dot=COLINEAR_DOT)
    elif params.nuslerp_row_wise:
        merged = slerp_vectors(t, first.movedim(0, -1), second.movedim(0, -1)).movedim(-1, 0)
    else:
        merged = slerp_vectors(t, first, second)
    return merged if inputs.base is None else inputs.base + merged


def nuslerp_streamed(slices: TensorSlices, params: NuSlerpParams, rng: torch.Generator) -> SliceMerge:
    """:func:`nuslerp` over slices when flattened (per-vector modes: computed whole, handed out in slices)."""
    t = _fraction(slices.name, len(slices.model_flats), slices.weights)
    if not (params.nuslerp_flatten or len(slices.shape) <= 1):
        return SliceMerge.of(nuslerp(slices.whole(), params, rng))
    if slices.base_flat is None:
        return streamed_slerp(
            t, slices, lambda a, b: slices.model(0, a, b), lambda a, b: slices.model(1, a, b), COLINEAR_DOT
        )
    inner = streamed_slerp(
        t, slices, lambda a, b: slices.delta(0, a, b), lambda a, b: slices.delta(1, a, b), COLINEAR_DOT
    )
    assert inner.into is not None

    def into(start: int, stop: int, out: torch.Tensor) -> None:
        inner.into(start, stop, out)  # type: ignore[misc]
        out.add_(slices.base(start, stop))  # θ_base + merged, bitwise (one fp32 sum per entry)

    # τ_i = θ_i − θ_base is NaN/inf wherever θ_base or θ_i is, so the task vectors' norms vouch for all three
    return SliceMerge(
        lambda start, stop: slices.base(start, stop) + inner.merge(start, stop),
        into=into,
        inputs_checked=inner.inputs_checked,
    )


METHODS = (
    MergeMethod(
        name="nuslerp",
        fn=nuslerp,
        needs_base=False,
        params=NuSlerpParams,
        min_models=2,
        max_models=2,
        formula="θ = [θ_base +] slerp(w_2/(w_1+w_2); θ_1 [− θ_base], θ_2 [− θ_base])",
        streamed=nuslerp_streamed,
        checks_inputs=True,
        light=True,
    ),
)
