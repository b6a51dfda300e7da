"""Random micro Llama models for storage tests (names, shapes and tying matter; quality does not)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(tie: bool = True, seed: int = 0, **config: Any) -> LlamaForCausalLM:
    """A 2-layer, 32-wide Llama with a 64-token vocabulary, deterministic for ``seed``."""
    torch.manual_seed(seed)
    fields: dict[str, Any] = {
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "tie_word_embeddings": tie,
    }
    fields.update(config)
    return LlamaForCausalLM(LlamaConfig(**fields)).eval()


# The config.json of a "model" the experiment DAG can fingerprint without loading it (plan-time tests).
PLAN_CONFIG: dict[str, Any] = {
    "hidden_size": 8,
    "intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "vocab_size": 32,
    "tie_word_embeddings": True,
}
