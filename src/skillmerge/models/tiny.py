"""Tiny from-scratch models: a byte-level BPE tokenizer trainer and small Llama configurations.

They make every pipeline stage testable in seconds on a CPU and give the scale ablation its small end.
A tiny model directory is an ordinary Hugging Face directory: ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load it offline.

Parameter counts with a 512-token vocabulary (tied input/output embeddings, so the vocabulary costs
``V·d`` once): tiny-1m 0.85M, tiny-5m 4.85M, tiny-20m 19.08M (:func:`count_parameters`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from skillmerge.atomic import atomic_dir
from skillmerge.errors import UsageError

PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    EOS_TOKEN,
    "<|im_start|>",
    "<|im_end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
)

CHATML_JINJA = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Shapes follow the usual small-Llama ratios: head_dim 32-64, MLP width ≈ 8/3·d rounded, grouped KV heads.
TINY_PRESETS: dict[str, dict[str, Any]] = {
    "tiny-1m": {
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "tiny-5m": {
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 6,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
    },
    "tiny-20m": {
        "hidden_size": 384,
        "intermediate_size": 1024,
        "num_hidden_layers": 12,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
    },
}


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 512,
    *,
    min_frequency: int = 2,
    chat_template: str = CHATML_JINJA,
    model_max_length: int = 2048,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts``.

    All 256 bytes are in the base alphabet, so any text is encodable; the special tokens of both the ChatML
    and the Tulu template are single tokens; ``</s>`` is EOS, ``<pad>`` is padding, there is no BOS; the
    ChatML chat template is set. The vocabulary may come out smaller than ``vocab_size`` on a small corpus.
    """
    minimum = 256 + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise UsageError(
            f"vocab_size {vocab_size} is below the byte alphabet plus special tokens ({minimum})"
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=model_max_length,
    )
    fast.chat_template = chat_template
    return fast


def tiny_config(preset: str, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    """The Llama config of ``preset`` sized to ``tokenizer``'s vocabulary and special tokens."""
    if preset not in TINY_PRESETS:
        raise UsageError(f"unknown tiny preset {preset!r}; choose one of: {', '.join(TINY_PRESETS)}")
    return LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length if tokenizer.model_max_length < 1e6 else 2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rms_norm_eps=1e-5,
        **TINY_PRESETS[preset],
    )


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied embedding is counted once)."""
    return sum(p.numel() for p in model.parameters())


def build_tiny_model(preset: str, tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised model; the global RNG state is left untouched."""
    config = tiny_config(preset, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()


def make_tiny_model(
    preset: str,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a randomly initialised ``preset`` model with ``tokenizer`` as a Hugging Face directory.

    The directory (config.json, generation_config.json, model.safetensors, tokenizer files and
    chat_template.jinja) appears atomically; an existing ``out_dir`` is refused unless ``overwrite``.
    """
    model = build_tiny_model(preset, tokenizer, seed)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)
