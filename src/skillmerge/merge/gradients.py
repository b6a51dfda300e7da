"""Parameter gradients: a list of numbers as a weight or parameter value, interpolated over the layers.

The rule (mergekit 0.1.5's, established by running it on tiny Llamas, see tests/test_mergekit_parity.py):

    position  t = j / (L − 1)      layer j (0-based) of a run of L layers; t = 1 when L = 1
    value     v(t) = piecewise-linear through the K values placed at t = 0, 1/(K−1), ..., 1

The run of layers is the whole model, or with ``slices`` the output slice the tensor belongs to. Tensors
outside the layer stack (embeddings, final norm, output head) sit at t = 0: they take the first value.
A list of one number is that number everywhere. No torch here: configs validate without loading it.
"""

from __future__ import annotations

import re
from typing import Any

# The per-layer part of a tensor name: `model.layers.3.mlp...` (Llama, Mistral, Qwen, GPT-NeoX's
# `gpt_neox.layers.3`), `transformer.h.3.attn...` (GPT-2, Falcon), `...blocks.3...`.
_LAYER = re.compile(r"^(?P<prefix>(?:.*\.)?(?:layers|h|blocks))\.(?P<index>\d+)\.(?P<suffix>.+)$")


def is_gradient(value: Any) -> bool:
    """True for a list of plain numbers (not booleans): a value interpolated over the layers."""
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def split_layer_name(name: str) -> tuple[str, int, str] | None:
    """``model.layers.3.mlp.up_proj.weight`` → (``model.layers``, 3, ``mlp.up_proj.weight``); None outside."""
    match = _LAYER.match(name)
    if match is None:
        return None
    return match.group("prefix"), int(match.group("index")), match.group("suffix")


def layer_name(prefix: str, index: int, suffix: str) -> str:
    return f"{prefix}.{index}.{suffix}"


def layer_position(j: int, count: int) -> float:
    """t of layer ``j`` in a run of ``count`` layers: j / (count − 1), and 1 for a one-layer run."""
    if count <= 1:
        return 1.0
    return j / (count - 1)


def at_position(value: Any, t: float) -> Any:
    """``value`` at position ``t`` in [0, 1]: a gradient is interpolated, anything else is returned as is."""
    if not is_gradient(value):
        return value
    if len(value) == 1:
        return value[0]
    x = t * (len(value) - 1)
    i = min(int(x), len(value) - 2)
    frac = x - i
    return value[i] + (value[i + 1] - value[i]) * frac


def values_at(values: dict[str, Any], t: float) -> dict[str, Any]:
    """Every gradient in ``values`` evaluated at ``t``."""
    return {key: at_position(value, t) for key, value in values.items()}


def knot_variants(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Dicts that, validated one by one, check every number a gradient holds (each knot in turn, the other
    gradients at their first knot). Interpolation stays between knots, so valid knots give valid values for
    the interval-bounded parameters merges use."""
    base = {key: (value[0] if is_gradient(value) else value) for key, value in values.items()}
    variants = [base]
    for key, value in values.items():
        if is_gradient(value):
            variants += [{**base, key: knot} for knot in value[1:]]
    return variants
