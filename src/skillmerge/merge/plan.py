"""Pre-flight validation and the per-tensor merge plan, built from headers and configs only (no tensor data).

Everything that can be checked without reading weights is checked here, before a byte is written: every
input exists and is readable (headers intact, no truncated shard), all full models share the architecture,
tensor names and shapes of the reference (θ_base, or the first model when there is none), vocabularies agree
(or the differing tokens are named), LoRA targets exist in the base with ΔW's shape, and the method's
parameters validate for every tensor after overrides. Non-finite values need the data: the engine checks each
tensor as it reads it, inside the atomic output directory, so a NaN still leaves nothing at the destination.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skillmerge.errors import ModelError, UsageError
from skillmerge.merge.config import MergeConfig
from skillmerge.merge.gradients import is_gradient
from skillmerge.merge.methods import get_method
from skillmerge.merge.methods.base import MergeMethod
from skillmerge.merge.tensor_tasks import (
    FLOAT_DTYPES,
    InputModel,
    Settings,
    TensorTask,
    is_head,
    layer_positions,
    numel,
    resolve_settings,
    source_name,
)
from skillmerge.merge.vectors import LoraAdapter, is_lora_dir, read_lora_adapter
from skillmerge.models.shards import INDEX_FILE, SINGLE_FILE, TensorReader

# The engine's memory levers, here because the plan's peak estimate is computed from them:
# streamed methods run over flat slices of CHUNK_ELEMENTS entries (1 MiB per fp32 operand): small enough
# that a slice's operands stay in cache through the method's passes, large enough that per-call overhead is
# noise; elementwise methods, with fewer passes per slice, over ELEMENTWISE_CHUNK_ELEMENTS (2 MiB: on
# SmolLM2, task arithmetic and linear merge ~5% faster than at 1 MiB, TIES ~8% slower at 2 MiB, measured
# here); the engine maps ahead at most PREFETCH_BYTES of raw input beyond the next tensor; and a tensor
# merged in slices is written in slices, from OUTPUT_SLICES reused slice buffers.
CHUNK_ELEMENTS = 1 << 18
ELEMENTWISE_CHUNK_ELEMENTS = 1 << 19
PREFETCH_BYTES = 256 * 1024**2
OUTPUT_SLICES = 4


def streams(
    method: MergeMethod, device: str | torch.device, compute: torch.dtype | str = torch.float32
) -> bool:
    """Whether the engine runs ``method`` as a streamed method (two phases over slices) on ``device``.

    Only on the CPU: a CUDA generator's draws depend on the shape drawn, so slices would change DARE's masks.
    Only in float32: a half-precision merge (``compute_dtype``) follows mergekit's whole-tensor operations.
    """
    if compute not in (torch.float32, "float32"):
        return False
    return not method.elementwise and method.streamed is not None and torch.device(device).type == "cpu"


@dataclass
class MergePlan:
    """The validated merge: inputs, per-tensor tasks, byte counts and a working-memory estimate."""

    config: MergeConfig
    method: MergeMethod
    base: InputModel | None
    models: list[InputModel]
    reference: InputModel
    tensors: list[TensorTask]
    tokenizer_dir: Path
    chat_template_dir: Path
    warnings: list[str] = field(default_factory=list)
    num_layers: int | None = None  # the output's layer count when slices restack layers

    def task_models(self, task: TensorTask) -> list[InputModel]:
        """The inputs merged into ``task``, in the order of its sources and weights."""
        if task.inputs is None:
            return self.models
        return [self.models[i] for i in task.inputs]

    @property
    def output_config(self) -> dict[str, Any]:
        """The merged model's config.json: the reference's, with the layer count of a sliced merge."""
        config = dict(self.reference.config)
        if self.num_layers is not None:
            config["num_hidden_layers"] = self.num_layers
        return config

    @property
    def bytes_read(self) -> int:
        return sum(t.bytes_in for t in self.tensors)

    @property
    def bytes_written(self) -> int:
        return sum(t.bytes_out for t in self.tensors)

    @property
    def peak_bytes(self) -> int:
        """Working memory estimate: raw input bytes in flight (the tensor being merged and those mapped
        ahead, see PREFETCH_BYTES) + fp32 working copies + the output: for an elementwise or streamed
        method a cache-sized slice per input (whole rows for DELLA) and OUTPUT_SLICES output slices, else
        the largest tensor in fp32 for every input, its delta, the method's temporaries, and the largest
        output tensor (the one in the writer). Output shards are written in place, never held in memory."""
        n = len(self.models)
        largest = max((numel(t.shape) for t in self.tensors), default=0)
        lora = any(m.kind == "lora" for m in self.models)
        compute = self.config.compute_dtype
        streamed = streams(
            self.method, self.config.device, self.config.dtype if compute == "dtype" else compute
        )
        sliced = not lora and (self.method.elementwise or streamed)
        if sliced:
            # a slice is CHUNK_ELEMENTS long (elementwise: ELEMENTWISE_CHUNK_ELEMENTS), or one row where
            # DELLA needs whole rows longer than that
            chunk = ELEMENTWISE_CHUNK_ELEMENTS if self.method.elementwise else CHUNK_ELEMENTS
            slices = (min(numel(t.shape), max(chunk, *t.shape[-1:])) for t in self.tensors)
            working = max(slices, default=0)
            output = OUTPUT_SLICES * working * 4
        else:
            working = largest
            output = max((t.bytes_out for t in self.tensors), default=0)
        fp32 = working * 4 * (2 * n + 3)
        by_size = sorted((t.bytes_in for t in self.tensors), reverse=True)
        # the tensor being merged and the next are mapped whole; further read-ahead stops at PREFETCH_BYTES
        prefetch = sum(by_size[:2]) + min(PREFETCH_BYTES, sum(by_size[2 : self.config.io_threads + 1]))
        return fp32 + prefetch + output

    def inputs(self) -> list[InputModel]:
        return ([self.base] if self.base is not None else []) + self.models

    def close(self) -> None:
        for item in self.inputs():
            item.close()

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method.name,
            "base_model": str(self.base.path) if self.base else None,
            "models": [
                {"model": str(m.path), "kind": m.kind, "weight": e.weight}
                for m, e in zip(self.models, self.config.models, strict=True)
            ],
            "slices": len(self.config.slices) if self.config.slices else None,
            "num_layers": self.num_layers,
            "tensors": len(self.tensors),
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "estimated_peak_bytes": self.peak_bytes,
            "tokenizer_from": str(self.tokenizer_dir),
            "chat_template_from": str(self.chat_template_dir),
            "warnings": list(self.warnings),
        }

    def describe(self, max_rows: int = 12) -> str:
        """A human-readable plan for ``--dry-run``."""
        lines = [f"merge: {self.method.name}, {len(self.models)} models, seed {self.config.seed}"]
        if self.base is not None:
            lines.append(f"  base   {self.base.path}")
        for model, entry in zip(self.models, self.config.models, strict=True):
            lines.append(f"  model  {model.path} ({model.kind}, weight {format_weight(entry.weight)})")
        if self.config.slices:
            lines.append(f"slices: {len(self.config.slices)}, {self.num_layers} output layers")
        lines.append(
            f"tensors: {len(self.tensors)}; read {_gib(self.bytes_read)}, write {_gib(self.bytes_written)}; "
            f"estimated working memory {_gib(self.peak_bytes)}"
        )
        shown = self.tensors if len(self.tensors) <= max_rows else self.tensors[: max_rows - 1]
        for task in shown:
            dtype = str(task.out_dtype).removeprefix("torch.")
            weights = ", ".join(f"{w:g}" for w in task.weights)
            lines.append(f"  {task.name:<48} {list(task.shape)!s:<14} {dtype:<9} weights [{weights}]")
        if len(shown) < len(self.tensors):
            lines.append(f"  ... {len(self.tensors) - len(shown)} more")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def build_plan(config: MergeConfig) -> MergePlan:
    """Validate ``config`` against the inputs on disk and plan every output tensor (reads headers only)."""
    method = get_method(config.method)
    _check_device(config.device)
    opened: list[InputModel] = []
    try:
        base = _open_input("base", config.base_model, config.base_model) if config.base_model else None
        if base is not None:
            opened.append(base)
            if base.kind == "lora":
                raise UsageError(f"{base.path}: base_model must be a model directory, not a LoRA adapter")
        models = []
        for i, entry in enumerate(config.models):
            models.append(_open_input(f"models.{i}", entry.model, entry.label))
            opened.append(models[-1])
        reference = base if base is not None else models[0]
        if reference.kind == "lora":
            raise UsageError(
                f"{reference.path}: a LoRA adapter needs base_model (the model it was trained on)"
            )
        if base is None and any(m.kind == "lora" for m in models):
            lora = next(m for m in models if m.kind == "lora")
            raise UsageError(f"{lora.path}: a LoRA adapter needs base_model (the model it was trained on)")
        warnings: list[str] = []
        for item in opened:
            if item is not reference:
                _check_architecture(reference, item)
        _check_vocabulary(reference, [m for m in opened if m is not reference and m.kind == "model"])
        num_layers = None
        if config.slices is not None:
            from skillmerge.merge.slices import plan_slices

            tensors, num_layers = plan_slices(config, base, models, reference)
        else:
            tensors = _plan_tensors(config, method, base, models, reference, warnings)
        tokenizer_dir = _source_dir(config.tokenizer_source, reference, "tokenizer_source")
        chat_dir = _source_dir(config.chat_template or config.tokenizer_source, reference, "chat_template")
        return MergePlan(
            config, method, base, models, reference, tensors, tokenizer_dir, chat_dir, warnings, num_layers
        )
    except BaseException:
        for item in opened:
            item.close()
        raise


def _check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"device: not a torch device: {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device: {device} requested but CUDA is not available")


def _open_input(role: str, path_text: str, label: str) -> InputModel:
    path = Path(path_text)
    if not path.exists():
        raise ModelError(f"{path}: {role} does not exist")
    if is_lora_dir(path):
        return InputModel(role, label, path, "lora", adapter=read_lora_adapter(path))
    # (models.io.is_model_dir would import transformers: seconds of start-up a merge does not need)
    if not (path / "config.json").is_file() or not (
        (path / SINGLE_FILE).is_file() or (path / INDEX_FILE).is_file()
    ):
        raise ModelError(
            f"{path}: {role} is neither a model directory (config.json + safetensors) nor a LoRA adapter"
        )
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path / 'config.json'}: unreadable ({err})") from None
    return InputModel(role, label, path, "model", reader=TensorReader(path), config=config)


def _check_architecture(reference: InputModel, other: InputModel) -> None:
    if other.kind == "lora":
        assert other.adapter is not None
        mapping = other.adapter.config.get("auto_mapping") or {}
        want = mapping.get("base_model_class")
        have = (reference.config.get("architectures") or [None])[0]
        if want and have and want != have:
            raise ModelError(f"{other.path}: adapter was trained on a {want}, but the base is a {have}")
        return
    for key in ("model_type", "architectures"):
        a, b = reference.config.get(key), other.config.get(key)
        if a != b:
            raise ModelError(
                f"{other.path}: different architecture from {reference.path} ({key} {b!r} vs {a!r})"
            )


def _vocab(model: InputModel) -> dict[str, int] | None:
    """token → id from ``tokenizer.json`` (None when the model ships no fast tokenizer)."""
    path = model.path / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True)
    except Exception as err:  # tokenizers raises a bare Exception on a malformed file
        raise ModelError(f"{path}: cannot read tokenizer ({err})") from None


def _same_bytes(a: Path, b: Path) -> bool:
    """True when both files exist and hold the same bytes (a size check first, then the contents)."""
    try:
        if not b.is_file() or a.stat().st_size != b.stat().st_size:
            return False
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _check_vocabulary(reference: InputModel, others: list[InputModel]) -> None:
    """Refuse an input whose vocabulary differs from the reference's (added, missing or renumbered tokens).

    A fine-tune usually ships its base's tokenizer file unchanged: equal bytes, equal vocabulary. Tokenizers
    are parsed (~0.1 s for a multi-MB file) only when some input's file differs from the reference's, so
    a merge of such models, or of one model, parses none.
    """
    ref_file = reference.path / "tokenizer.json"
    if not ref_file.is_file():
        return
    ref_vocab: dict[str, int] | None = None
    for other in others:
        if _same_bytes(ref_file, other.path / "tokenizer.json"):
            continue
        ref_vocab = ref_vocab if ref_vocab is not None else _vocab(reference)
        ref = ref_vocab
        assert ref is not None  # the file exists: parsed, or refused as unreadable
        vocab = _vocab(other)
        if vocab is None or vocab == ref:
            continue
        added = sorted(set(vocab) - set(ref), key=lambda t: vocab[t])
        missing = sorted(set(ref) - set(vocab), key=lambda t: ref[t])
        moved = sorted((t for t in set(vocab) & set(ref) if vocab[t] != ref[t]), key=ref.get)
        parts = []
        for what, tokens in (("adds", added), ("lacks", missing), ("renumbers", moved)):
            if tokens:
                shown = ", ".join(repr(t) for t in tokens[:5]) + (" ..." if len(tokens) > 5 else "")
                parts.append(f"{what} {len(tokens)} token(s) {shown}")
        raise ModelError(
            f"{other.path}: vocabulary differs from {reference.path}: {'; '.join(parts)} "
            "(merge models that share one tokenizer)"
        )


def _plan_tensors(
    config: MergeConfig,
    method: MergeMethod,
    base: InputModel | None,
    models: list[InputModel],
    reference: InputModel,
    warnings: list[str],
) -> list[TensorTask]:
    assert reference.reader is not None
    ref_names = set(reference.reader.names())
    for model in models:
        if model.kind == "model" and model is not reference:
            assert model.reader is not None
            for name in model.reader.names():
                if name in ref_names:
                    continue
                if is_head(name) and reference.tied:
                    warnings.append(
                        f"{model.path}: has its own {name} but the output ties it to the embedding"
                    )
                    continue
                raise ModelError(f"{model.path}: tensor {name} is not in {reference.path}")
        if model.kind == "lora":
            assert model.adapter is not None
            for target in sorted(model.adapter.targets()):
                if target not in ref_names:
                    raise ModelError(f"{model.path}: LoRA target {target} does not exist in {reference.path}")
                want = reference.reader.shape(target)
                got = model.adapter.delta_shape(target) if target in model.adapter.modules else None
                if got is not None and got != want:
                    raise ModelError(
                        f"{model.path}: LoRA ΔW for {target} has shape {list(got)}, the base has {list(want)}"
                    )
                if target in model.adapter.replacements:
                    stored = model.adapter.reader.shape(model.adapter.replacements[target])
                    if stored != want:
                        raise ModelError(
                            f"{model.path}: stores {target} with shape {list(stored)}, "
                            f"the base has {list(want)}"
                        )

    out_dtype = getattr(torch, config.dtype) if config.dtype else None
    positions = layer_positions(ref_names)
    cache: dict[tuple[tuple[int, ...], float], Settings] = {}
    tasks = []
    for name in sorted(ref_names):
        shape = reference.reader.shape(name)
        entry = reference.reader.entry(name)
        bytes_in = 0
        sources: list[str | None] = []
        base_source = None
        if base is not None:
            base_source = name
            bytes_in += entry.end - entry.begin
        for model in models:
            if model.kind == "lora":
                sources.append(None)
                bytes_in += _lora_bytes(model.adapter, name)
                continue
            assert model.reader is not None
            source = source_name(reference, model, name) if model is not reference else name
            if model.reader.shape(source) != shape:
                raise ModelError(
                    f"{model.path}: tensor {name} has shape {list(model.reader.shape(source))}, "
                    f"{reference.path} has {list(shape)}"
                )
            sources.append(source)
            other = model.reader.entry(source)
            bytes_in += other.end - other.begin
        mergeable = entry.dtype in FLOAT_DTYPES
        dtype = out_dtype if (out_dtype is not None and mergeable) else reference.reader.dtype(name)
        matched = tuple(j for j, o in enumerate(config.overrides) if o.matches(name))
        key = (matched, positions.get(name, 0.0))
        if key not in cache:
            cache[key] = resolve_settings(config, matched, key[1])
        weights, model_params, params = cache[key]
        bytes_out = numel(shape) * torch.empty((), dtype=dtype).element_size()
        tasks.append(
            TensorTask(
                name,
                shape,
                dtype,
                base_source,
                tuple(sources),
                weights,
                model_params,
                params,
                mergeable,
                bytes_in,
                bytes_out,
            )
        )
    return tasks


def _lora_bytes(adapter: LoraAdapter | None, name: str) -> int:
    if adapter is None:
        return 0
    total = 0
    keys = []
    if name in adapter.modules:
        keys += [adapter.modules[name].a_key, adapter.modules[name].b_key]
    if name in adapter.replacements:
        keys.append(adapter.replacements[name])
    for key in keys:
        entry = adapter.reader.entry(key)
        total += entry.end - entry.begin
    return total


def _source_dir(source: str, reference: InputModel, field_name: str) -> Path:
    if source == "base":
        return reference.path
    if source == "union":
        raise UsageError(f"{field_name}: 'union' is not supported yet (use base or a model path)")
    path = Path(source)
    if not path.is_dir():
        raise UsageError(f"{field_name}: {path} is not a directory")
    return path


def format_weight(weight: Any) -> str:
    """A weight for a human: ``0.5``, or a gradient ``[0, 0.5, 1]``."""
    if is_gradient(weight):
        return "[" + ", ".join(f"{w:g}" for w in weight) + "]"
    return f"{weight:g}"


def _gib(count: int) -> str:
    if count >= 1024**3:
        return f"{count / 1024**3:.2f} GiB"
    return f"{count / 1024**2:.1f} MiB"
