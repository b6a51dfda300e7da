"""LoRA task vectors: ΔW built exactly from a PEFT LoRA adapter (full models: ``methods.base.task_vector``).

For a LoRA adapter on a linear layer with ``lora_A`` (r × in) and ``lora_B`` (out × r)::

    ΔW = s · B @ A,   s = α / r  (or α / √r with rsLoRA)

transposed when the layer stores its weight as (in × out) (``fan_in_fan_out``, GPT-2 ``Conv1D``). On an
embedding, PEFT stores ``lora_embedding_A`` (r × vocab) and ``lora_embedding_B`` (dim × r), and
ΔE = s · (B @ A)ᵀ. Tensors the adapter stores whole (``modules_to_save``, a saved ``base_layer``) replace
the base's tensor before ΔW is added — exactly what ``merge_and_unload`` computes. Each ΔW is built on
demand for one tensor, so the skill model is never materialised.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skillmerge.errors import ModelError
from skillmerge.models.shards import TensorReader

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."
# Adapter options that change what the adapter computes in ways ΔW = s·B·A does not capture.
_UNSUPPORTED_TRUE = ("use_dora", "lora_bias", "use_qalora", "use_bdlora")
_UNSUPPORTED_SET = (
    "layer_replication",
    "target_parameters",
    "trainable_token_indices",
    "alora_invocation_tokens",
)


def is_lora_dir(path: str | Path) -> bool:
    """True when ``path`` is a PEFT adapter directory (``adapter_config.json``)."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


@dataclass(frozen=True)
class LoraModule:
    """One adapted tensor: where its factors live and how to combine them."""

    target: str  # the base tensor it changes, e.g. model.layers.0.self_attn.q_proj.weight
    a_key: str
    b_key: str
    scale: float
    embedding: bool
    fan_in_fan_out: bool


def lora_delta(module: LoraModule, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ΔW = s·B @ A from fp32 factors, as the base tensor lays it out (ᵀ for embeddings and fan_in_fan_out).

    The one place ΔW is formed: the engine calls it on factors it has read, :meth:`LoraAdapter.delta` on
    factors it reads itself. The transpose is a view; callers that keep ΔW make it contiguous.
    """
    delta = (b @ a) * module.scale
    return delta.T if module.embedding or module.fan_in_fan_out else delta


@dataclass
class LoraAdapter:
    """A PEFT LoRA adapter read lazily: ΔW per target tensor, plus tensors it stores whole."""

    path: Path
    config: dict[str, Any]
    reader: TensorReader
    modules: dict[str, LoraModule] = field(default_factory=dict)
    replacements: dict[str, str] = field(default_factory=dict)  # base tensor name -> adapter key

    def targets(self) -> set[str]:
        """Base tensor names this adapter changes."""
        return set(self.modules) | set(self.replacements)

    def delta_shape(self, name: str) -> tuple[int, ...]:
        """The shape ΔW of ``name`` will have (for pre-flight checks; reads headers only)."""
        module = self.modules[name]
        a, b = self.reader.shape(module.a_key), self.reader.shape(module.b_key)
        shape = (b[0], a[1])
        return shape[::-1] if module.embedding or module.fan_in_fan_out else shape

    def delta(self, name: str, device: str | torch.device = "cpu") -> torch.Tensor | None:
        """ΔW for base tensor ``name`` in fp32, or None if the adapter has no factors for it."""
        module = self.modules.get(name)
        if module is None:
            return None
        a = self.reader.get(module.a_key).to(device=device, dtype=torch.float32)
        b = self.reader.get(module.b_key).to(device=device, dtype=torch.float32)
        return lora_delta(module, a, b).contiguous()

    def replacement(self, name: str) -> torch.Tensor | None:
        """The whole tensor the adapter stores for ``name`` (modules_to_save / base_layer), if any."""
        key = self.replacements.get(name)
        return None if key is None else self.reader.get(key)

    def close(self) -> None:
        self.reader.close()


def read_lora_adapter(path: str | Path) -> LoraAdapter:
    """Parse a PEFT LoRA adapter directory; refuses DoRA and other variants ΔW = s·B·A does not cover."""
    path = Path(path)
    config_path = path / ADAPTER_CONFIG
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{config_path}: cannot read adapter config ({err})") from None
    if not isinstance(config, dict):
        raise ModelError(f"{config_path}: adapter config is not a JSON object")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise ModelError(f"{config_path}: peft_type {peft_type} is not supported (only LORA)")
    for key in _UNSUPPORTED_TRUE:
        if config.get(key):
            raise ModelError(
                f"{config_path}: {key}=true is not supported (merge it with merge_and_unload first)"
            )
    for key in _UNSUPPORTED_SET:
        if config.get(key):
            raise ModelError(f"{config_path}: {key} is not supported (merge it with merge_and_unload first)")
    weights = path / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ModelError(f"{weights}: adapter weights are missing (only safetensors adapters are supported)")
    reader = TensorReader(weights)
    adapter = LoraAdapter(path, config, reader)
    try:
        _index_keys(adapter, config_path)
    except BaseException:
        reader.close()
        raise
    return adapter


def _index_keys(adapter: LoraAdapter, config_path: Path) -> None:
    config = adapter.config
    alpha = float(config.get("lora_alpha", 8))
    alpha_pattern: dict[str, float] = config.get("alpha_pattern") or {}
    rslora = bool(config.get("use_rslora", False))
    fan_in_fan_out = bool(config.get("fan_in_fan_out", False))
    factors: dict[str, dict[str, str]] = {}
    for key in adapter.reader.names():
        if not key.startswith(_PREFIX):
            raise ModelError(f"{adapter.path / ADAPTER_WEIGHTS}: unexpected tensor {key} (not a PEFT key)")
        rest = key[len(_PREFIX) :]
        match = re.fullmatch(
            r"(.+)\.(lora_A|lora_B)(?:\.[^.]+)?\.weight|(.+)\.(lora_embedding_[AB])(?:\.[^.]+)?", rest
        )
        if match:
            module = match.group(1) or match.group(3)
            part = match.group(2) or match.group(4)
            factors.setdefault(module, {})[part] = key
            continue
        if rest.endswith(".base_layer.weight"):
            adapter.replacements[rest.removesuffix(".base_layer.weight") + ".weight"] = key
        elif re.search(r"\.(lora_|magnitude)", rest):
            raise ModelError(
                f"{adapter.path / ADAPTER_WEIGHTS}: tensor {key} is not supported (LoRA variant)"
            )
        else:  # modules_to_save and trained biases are stored whole
            adapter.replacements[rest.replace(".modules_to_save.default", "")] = key
    for module, parts in factors.items():
        embedding = "lora_embedding_A" in parts or "lora_embedding_B" in parts
        a_key = parts.get("lora_embedding_A" if embedding else "lora_A")
        b_key = parts.get("lora_embedding_B" if embedding else "lora_B")
        if a_key is None or b_key is None:
            raise ModelError(f"{adapter.path / ADAPTER_WEIGHTS}: {module} has only one of its LoRA factors")
        a_shape, b_shape = adapter.reader.shape(a_key), adapter.reader.shape(b_key)
        if len(a_shape) != 2 or len(b_shape) != 2:
            raise ModelError(
                f"{adapter.path / ADAPTER_WEIGHTS}: {module}: "
                "only linear and embedding LoRA layers are supported"
            )
        rank = a_shape[0]
        if b_shape[1] != rank:
            raise ModelError(
                f"{adapter.path / ADAPTER_WEIGHTS}: {module}: lora_A rank {rank} != lora_B rank {b_shape[1]}"
            )
        module_alpha = float(_pattern_value(alpha_pattern, module, alpha))
        scale = module_alpha / math.sqrt(rank) if rslora else module_alpha / rank
        target = f"{module}.weight"
        adapter.modules[target] = LoraModule(
            target, a_key, b_key, scale, embedding, fan_in_fan_out and not embedding
        )
    if not adapter.modules and not adapter.replacements:
        raise ModelError(f"{config_path}: adapter holds no LoRA tensors")


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's per-module override lookup: a pattern matches a module name or its dotted suffix."""
    for pattern, value in patterns.items():
        if re.fullmatch(rf"(.*\.)?({pattern})", module):
            return value
    return default
