"""What the merge does for each output tensor, shared by the plan (:mod:`.plan`) and sliced merges
(:mod:`.slices`): the opened inputs, one task per output tensor, and how a tensor's weights and parameters
resolve from the config's overrides at its layer position (gradients).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel

from skillmerge.errors import ModelError, UsageError
from skillmerge.merge.config import MergeConfig
from skillmerge.merge.gradients import at_position, layer_position, split_layer_name
from skillmerge.merge.vectors import LoraAdapter
from skillmerge.models.shards import TensorReader

# Names under which a tied output head reads the input embedding (first match wins).
EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight")
HEAD_SUFFIXES = ("lm_head.weight", "embed_out.weight")
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


@dataclass
class InputModel:
    """One input: an HF model directory (read tensor by tensor) or a LoRA adapter (ΔW on the fly)."""

    role: str  # "base" or "models.<i>"
    label: str
    path: Path
    kind: Literal["model", "lora"]
    reader: TensorReader | None = None
    adapter: LoraAdapter | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        if self.adapter is not None:
            self.adapter.close()


@dataclass(frozen=True)
class TensorTask:
    """What to do for one output tensor: where each input reads it from, weights and parameters."""

    name: str
    shape: tuple[int, ...]
    out_dtype: torch.dtype
    base_source: str | None  # tensor name to read in θ_base (None: no base)
    sources: tuple[str | None, ...]  # per model: tensor name to read (None for a LoRA entry)
    weights: tuple[float, ...]
    model_params: tuple[BaseModel, ...]
    params: BaseModel
    merge: bool  # False: a non-float tensor copied from the reference
    bytes_in: int
    bytes_out: int
    inputs: tuple[int, ...] | None = None  # indices into MergePlan.models read for it (None: every model)


def tied_source(names: set[str] | list[str]) -> str | None:
    for suffix in EMBEDDING_SUFFIXES:
        for name in sorted(names):
            if name.endswith(suffix):
                return name
    return None


def is_head(name: str) -> bool:
    return name.endswith(HEAD_SUFFIXES)


def source_name(reference: InputModel, model: InputModel, name: str) -> str:
    """The tensor ``model`` holds for output tensor ``name`` (a tied head reads the embedding)."""
    assert model.reader is not None
    if name in model.reader:
        return name
    if is_head(name) and model.tied:
        source = tied_source(model.reader.names())
        if source is not None:
            return source
    raise ModelError(f"{model.path}: missing tensor {name} (present in {reference.path})")


Settings = tuple[tuple[float, ...], tuple[BaseModel, ...], BaseModel]


def layer_positions(names: set[str] | list[str]) -> dict[str, float]:
    """Each layer tensor's gradient position t over the model's layer stack (other tensors: absent, t = 0)."""
    split = {name: split_layer_name(name) for name in names}
    count = 1 + max((parts[1] for parts in split.values() if parts is not None), default=-1)
    return {name: layer_position(parts[1], count) for name, parts in split.items() if parts is not None}


def resolve_settings(
    config: MergeConfig, matched: tuple[int, ...], t: float, slice_index: int | None = None
) -> Settings:
    """Weights and parameters at layer position ``t`` for tensors matching the overrides ``matched``.

    Overrides are the top-level ones followed (with ``slice_index``) by that slice's, applied in order; the
    entries are ``config.models``, or the slice's merged sources. Gradients are evaluated at ``t``.
    """
    if slice_index is None:
        overrides = list(config.overrides)
        entries: list[Any] = list(config.models)
    else:
        assert config.slices is not None
        overrides = [*config.overrides, *config.slices[slice_index].overrides]
        entries = [config.slices[slice_index].sources[k] for k in config.slice_inputs(slice_index)]
    weights = [float(at_position(e.weight, t)) for e in entries]
    global_extra: dict[str, Any] = {}
    model_extra: list[dict[str, Any]] = [{} for _ in entries]
    try:
        for j in matched:
            override = overrides[j]
            label = f"overrides.{j}"
            global_keys, model_keys = config.split_override_on(j, override, entries, label, slice_index)
            global_extra.update(global_keys)
            for i, entry in enumerate(entries):
                if override.applies_to(entry):
                    if override.weight is not None:
                        weights[i] = float(at_position(override.weight, t))
                    model_extra[i].update(model_keys)
        params = config.method_params(global_extra, t=t, slice_index=slice_index)
        if slice_index is None:
            model_params = tuple(config.model_params(i, model_extra[i], t) for i in range(len(entries)))
        else:
            inputs = config.slice_inputs(slice_index)
            model_params = tuple(
                config.source_params(slice_index, k, model_extra[i], t) for i, k in enumerate(inputs)
            )
    except ValueError as err:
        raise UsageError(f"overrides: {err}") from None
    return tuple(weights), model_params, params


def numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
