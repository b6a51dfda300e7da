"""How much task vectors overlap, layer by layer: the interference a multi-skill merge has to live with.

For task vectors τ_k = θ_k − θ_base and each pair (a, b), per layer group (all tensors of one transformer
layer; the embeddings and output head; everything else such as the final norm)::

    cosine(a, b)        = Σ τ_a·τ_b / (‖τ_a‖ · ‖τ_b‖)                      (0 when either is all zero)
    sign_conflict(a, b) = #{i : τ_a,i · τ_b,i < 0} / #{i : τ_a,i ≠ 0 and τ_b,i ≠ 0}

A cosine near 0 means the skills moved orthogonal directions (summing them adds both); a sign-conflict rate
near 0.5 means that, entry by entry, the skills disagree on direction as often as chance (TIES resolves
exactly these conflicts by a sign election). Tensors are read one at a time (never a whole model), deltas
are taken in fp32 and sums kept in float64, so a 7B model needs a few tensors' worth of memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from itertools import combinations
from pathlib import Path
from typing import Any

import torch

from skillmerge.errors import ModelError
from skillmerge.models.shards import TensorReader

EMBEDDINGS, OTHER = "embeddings", "other"
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


def layer_group(name: str) -> str:
    """``"12"`` for ``model.layers.12.mlp.up_proj.weight``; ``embeddings`` for the token embeddings and the
    output head; ``other`` for the rest (final norm, ...)."""
    found = _LAYER.search(name)
    if found:
        return found.group(1)
    if "embed" in name or "lm_head" in name or name.endswith("wte.weight"):
        return EMBEDDINGS
    return OTHER


def _group_order(group: str) -> tuple[int, int]:
    if group == EMBEDDINGS:
        return (0, 0)
    if group == OTHER:
        return (2, 0)
    return (1, int(group))


def task_vector_overlap(
    base: str | Path,
    models: Mapping[str, str | Path],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Per-layer cosine similarity and sign-conflict rate of every pair of task vectors ``models[k] − base``.

    ``models`` maps a name (a skill) to a model directory with the same tensors as ``base``. Returns
    ``{"groups": [...], "pairs": {"a+b": {"cosine": [...], "sign_conflict": [...], "overall":
    {"cosine", "sign_conflict"}}}, "norms": {name: [‖τ‖ per group]}}`` with lists in ``groups`` order.
    Raises :class:`ModelError` naming the model and tensor when names, shapes or values do not match.
    """
    names = list(models)
    if len(names) < 2:
        raise ModelError(f"task vector overlap needs at least two models, got {len(names)}")
    with ExitStack() as stack:
        readers = {name: stack.enter_context(TensorReader(models[name])) for name in names}
        base_reader = stack.enter_context(TensorReader(base))
        sums = _accumulate(base_reader, readers, models, progress)
    return _summarise(names, *sums)


def _accumulate(
    base_reader: TensorReader,
    readers: Mapping[str, TensorReader],
    models: Mapping[str, str | Path],
    progress: Callable[[int, int], None] | None,
) -> tuple[list[str], dict, dict, dict, dict]:
    """One pass over the tensors: per pair and layer group Σ τ_a·τ_b, sign conflicts and both-nonzero
    counts; per model and group Σ τ²."""
    names = list(readers)
    pairs = list(combinations(names, 2))
    dot: dict[tuple[str, str], dict[str, float]] = {pair: {} for pair in pairs}
    conflicts: dict[tuple[str, str], dict[str, int]] = {pair: {} for pair in pairs}
    both: dict[tuple[str, str], dict[str, int]] = {pair: {} for pair in pairs}
    square: dict[str, dict[str, float]] = {name: {} for name in names}
    tensors = base_reader.names()
    for name, reader in readers.items():
        extra = sorted(set(tensors) ^ set(reader.names()))
        if extra:
            raise ModelError(f"{models[name]}: tensor {extra[0]} is not in both it and the base")
    for done, tensor in enumerate(tensors, start=1):
        group = layer_group(tensor)
        origin = base_reader.get(tensor).to(torch.float32)
        deltas: dict[str, torch.Tensor] = {}
        for name, reader in readers.items():
            value = reader.get(tensor)
            if tuple(value.shape) != tuple(origin.shape):
                raise ModelError(
                    f"{models[name]}: tensor {tensor} has shape {tuple(value.shape)}, "
                    f"the base has {tuple(origin.shape)}"
                )
            delta = (value.to(torch.float32) - origin).flatten()
            if not bool(torch.isfinite(delta).all()):
                raise ModelError(f"{models[name]}: tensor {tensor} holds a non-finite value")
            deltas[name] = delta
            square[name][group] = square[name].get(group, 0.0) + float(
                torch.dot(delta.double(), delta.double())
            )
        for a, b in pairs:
            x, y = deltas[a], deltas[b]
            dot[(a, b)][group] = dot[(a, b)].get(group, 0.0) + float(torch.dot(x.double(), y.double()))
            product = torch.sign(x) * torch.sign(y)
            conflicts[(a, b)][group] = conflicts[(a, b)].get(group, 0) + int((product < 0).sum())
            both[(a, b)][group] = both[(a, b)].get(group, 0) + int((product != 0).sum())
        if progress is not None:
            progress(done, len(tensors))
    return tensors, dot, conflicts, both, square


def _summarise(
    names: list[str], tensors: list[str], dot: dict, conflicts: dict, both: dict, square: dict
) -> dict[str, Any]:
    pairs = list(combinations(names, 2))
    groups = sorted({layer_group(t) for t in tensors}, key=_group_order)
    out: dict[str, Any] = {"groups": groups, "pairs": {}, "norms": {}}
    for name in names:
        out["norms"][name] = [square[name].get(g, 0.0) ** 0.5 for g in groups]
    for a, b in pairs:
        d, c, n = dot[(a, b)], conflicts[(a, b)], both[(a, b)]
        out["pairs"][f"{a}+{b}"] = {
            "cosine": [_cosine(d.get(g, 0.0), square[a].get(g, 0.0), square[b].get(g, 0.0)) for g in groups],
            "sign_conflict": [_rate(c.get(g, 0), n.get(g, 0)) for g in groups],
            "overall": {
                "cosine": _cosine(sum(d.values()), sum(square[a].values()), sum(square[b].values())),
                "sign_conflict": _rate(sum(c.values()), sum(n.values())),
            },
        }
    return out


def _cosine(dot: float, square_a: float, square_b: float) -> float:
    return dot / (square_a**0.5 * square_b**0.5) if square_a > 0 and square_b > 0 else 0.0


def _rate(count: int, total: int) -> float:
    return count / total if total else 0.0
