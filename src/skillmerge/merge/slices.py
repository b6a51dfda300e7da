"""The per-tensor plan of a sliced merge: output layers stacked from the slices' layer ranges.

Slice s covers output layers [o_s, o_s + L_s), o_s the layer count of the slices before it. Output layer
o_s + j is merged from layer ``start_k + j`` of each source k (``layer_range: [start_k, end_k)``), with the
slice's weights and parameters at gradient position t = j / (L_s − 1) (:mod:`skillmerge.merge.gradients`).
Tensors outside the layer stack take t = 0 and come from one slice, as in mergekit 0.1.5: the input
embeddings from the first slice's sources, everything after the stack (final norm, output head) from the
last slice's. With one source per slice and ``passthrough`` this stacks layers (a "frankenmerge"). The output
config.json gets ``num_hidden_layers`` = Σ L_s.
"""

from __future__ import annotations

import torch

from skillmerge.errors import ModelError, UsageError
from skillmerge.merge.config import MergeConfig, SliceSource
from skillmerge.merge.gradients import layer_name, layer_position, split_layer_name
from skillmerge.merge.tensor_tasks import (
    EMBEDDING_SUFFIXES,
    FLOAT_DTYPES,
    InputModel,
    Settings,
    TensorTask,
    numel,
    resolve_settings,
    source_name,
)

# Input position embeddings sit before the stack too (GPT-2's wpe, OPT's embed_positions).
_PRE_SUFFIXES = (*EMBEDDING_SUFFIXES, "wpe.weight", "embed_positions.weight")


def plan_slices(
    config: MergeConfig, base: InputModel | None, models: list[InputModel], reference: InputModel
) -> tuple[list[TensorTask], int]:
    """Every output tensor of ``config.slices`` and the output's layer count (reads headers only)."""
    assert config.slices is not None and reference.reader is not None
    by_path = {entry.model: i for i, entry in enumerate(config.models)}
    for model in [*models, *([base] if base is not None else [])]:
        if model.kind == "lora":
            raise UsageError(f"{model.path}: slices take model directories, not LoRA adapters")
    layers = {id(model): _layer_table(model) for model in [*models, *([base] if base else [])]}
    out_dtype = getattr(torch, config.dtype) if config.dtype else None
    tasks: list[TensorTask] = []
    cache: dict[tuple[int, tuple[int, ...], float], Settings] = {}

    def add(name: str, s: int, t: float, base_source: str | None, picks: list[tuple[int, str]]) -> None:
        overrides = [*config.overrides, *config.slices[s].overrides]  # type: ignore[index]
        matched = tuple(j for j, o in enumerate(overrides) if o.matches(name))
        key = (s, matched, t)
        if key not in cache:
            cache[key] = resolve_settings(config, matched, t, s)
        weights, model_params, params = cache[key]
        readers = ([(base, base_source)] if base is not None and base_source is not None else []) + [
            (models[i], source) for i, source in picks
        ]
        first, first_name = readers[0]
        assert first is not None and first.reader is not None
        shape, raw_dtype = first.reader.shape(first_name), first.reader.entry(first_name).dtype
        bytes_in = 0
        for model, source in readers:
            assert model is not None and model.reader is not None
            if model.reader.shape(source) != shape:
                raise ModelError(
                    f"{model.path}: tensor {source} has shape {list(model.reader.shape(source))}, "
                    f"{first.path} has {list(shape)} in {first_name}"
                )
            entry = model.reader.entry(source)
            bytes_in += entry.end - entry.begin
        mergeable = raw_dtype in FLOAT_DTYPES
        dtype = out_dtype if (out_dtype is not None and mergeable) else first.reader.dtype(first_name)
        bytes_out = numel(shape) * torch.empty((), dtype=dtype).element_size()
        tasks.append(
            TensorTask(
                name=name,
                shape=shape,
                out_dtype=dtype,
                base_source=base_source,
                sources=tuple(source for _, source in picks),
                weights=weights,
                model_params=model_params,
                params=params,
                merge=mergeable,
                bytes_in=bytes_in,
                bytes_out=bytes_out,
                inputs=tuple(i for i, _ in picks),
            )
        )

    def model_of(source: SliceSource) -> InputModel:
        if base is not None and source.model == config.base_model:
            return base
        return models[by_path[source.model]]

    offset = 0
    for s, slice_ in enumerate(config.slices):
        inputs = config.slice_inputs(s)
        base_entry = config.slice_base(s)
        for k, source in enumerate(slice_.sources):
            start, end = source.layer_range
            have = len(layers[id(model_of(source))])
            if end > have:
                raise UsageError(
                    f"slices.{s}.sources.{k}.layer_range: [{start}, {end}] goes past the {have} layers of "
                    f"{model_of(source).path}"
                )
        for j in range(slice_.length):
            t = layer_position(j, slice_.length)
            first = base_entry if base_entry is not None else slice_.sources[inputs[0]]
            template = layers[id(model_of(first))][first.layer_range[0] + j]
            for prefix, suffix in template:
                out_name = layer_name(prefix, offset + j, suffix)
                base_source = None
                if base_entry is not None:
                    base_source = _layer_source(model_of(base_entry), base_entry, j, prefix, suffix, s)
                picks = [
                    (by_path[src.model], _layer_source(model_of(src), src, j, prefix, suffix, s))
                    for src in (slice_.sources[k] for k in inputs)
                ]
                add(out_name, s, t, base_source, picks)
        offset += slice_.length

    ref_names = sorted(n for n in reference.reader.names() if split_layer_name(n) is None)
    last = len(config.slices) - 1
    for name in ref_names:
        s = 0 if name.endswith(_PRE_SUFFIXES) else last
        inputs = config.slice_inputs(s)
        picks = []
        for k in inputs:
            model = model_of(config.slices[s].sources[k])
            picks.append((by_path[config.slices[s].sources[k].model], source_name(reference, model, name)))
        base_source = None
        if base is not None:
            base_source = source_name(reference, base, name)
        add(name, s, 0.0, base_source, picks)
    tasks.sort(key=lambda task: task.name)
    return tasks, offset


def _layer_source(model: InputModel, entry: SliceSource, j: int, prefix: str, suffix: str, s: int) -> str:
    """The tensor of ``model`` that slice ``s``'s layer ``j`` reads (layer ``start + j`` of its range)."""
    name = layer_name(prefix, entry.layer_range[0] + j, suffix)
    assert model.reader is not None
    if name not in model.reader:
        raise ModelError(f"{model.path}: missing tensor {name} (slices.{s} reads it)")
    return name


def _layer_table(model: InputModel) -> list[list[tuple[str, str]]]:
    """Per layer index, the (prefix, suffix) of each of the model's tensors in that layer."""
    assert model.reader is not None
    table: dict[int, list[tuple[str, str]]] = {}
    for name in sorted(model.reader.names()):
        parts = split_layer_name(name)
        if parts is not None:
            prefix, index, suffix = parts
            table.setdefault(index, []).append((prefix, suffix))
    count = 1 + max(table, default=-1)
    return [table.get(i, []) for i in range(count)]


__all__ = ["plan_slices"]
