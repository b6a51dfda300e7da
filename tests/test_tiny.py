"""Tiny models: the BPE tokenizer, preset sizes, and HF directories that load offline and reproducibly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast

from skillmerge.errors import OutputExistsError, UsageError
from skillmerge.models.tiny import (
    SPECIAL_TOKENS,
    build_tiny_model,
    count_parameters,
    make_tiny_model,
    tiny_config,
    train_bpe_tokenizer,
)


def test_special_tokens_are_single_tokens(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    for token in SPECIAL_TOKENS:
        ids = tiny_tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1 and tiny_tokenizer.convert_ids_to_tokens(ids[0]) == token
    assert tiny_tokenizer.eos_token == "</s>"
    assert tiny_tokenizer.pad_token == "<pad>"
    assert tiny_tokenizer.bos_token is None
    assert len(tiny_tokenizer) <= 512


def test_byte_level_bpe_round_trips_any_text(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    text = "The cat sees 42 birds — ünïcødé, 漢字, emoji 🐈 and tabs\t\nnewlines."
    ids = tiny_tokenizer.encode(text, add_special_tokens=False)
    assert tiny_tokenizer.decode(ids) == text
    # merges were learned: common corpus words take fewer tokens than bytes
    assert len(tiny_tokenizer.encode("the cat sees the dog", add_special_tokens=False)) < 10


def test_chat_template_is_chatml(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    text = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_too_small_vocab_is_refused() -> None:
    with pytest.raises(UsageError, match="vocab_size 100 is below"):
        train_bpe_tokenizer(["hello"], vocab_size=100)


@pytest.mark.parametrize(
    ("preset", "low", "high"), [("tiny-1m", 0.7e6, 1.3e6), ("tiny-5m", 4e6, 6e6), ("tiny-20m", 17e6, 23e6)]
)
def test_presets_have_their_nominal_size(
    preset: str, low: float, high: float, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    config = tiny_config(preset, tiny_tokenizer)
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        model = LlamaForCausalLM(config)
    assert low <= count_parameters(model) <= high
    assert config.vocab_size == len(tiny_tokenizer)
    assert config.eos_token_id == tiny_tokenizer.eos_token_id
    assert config.pad_token_id == tiny_tokenizer.pad_token_id


def test_unknown_preset_is_refused(tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"unknown tiny preset 'tiny-3m'; choose one of: tiny-1m, tiny-5m"):
        make_tiny_model("tiny-3m", tiny_tokenizer, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_tiny_model_dir_loads_offline_with_auto_classes(
    tiny_model_dir: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert json.loads((tiny_model_dir / "config.json").read_text())["model_type"] == "llama"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    assert tokenizer.chat_template == tiny_tokenizer.chat_template
    assert tokenizer.get_vocab() == tiny_tokenizer.get_vocab()
    # the saved weights are the seed-0 initialisation
    fresh = build_tiny_model("tiny-1m", tiny_tokenizer, seed=0)
    ids = torch.tensor([tokenizer.encode("the cat sees the dog")])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, fresh(ids).logits)


def test_seed_decides_the_weights(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    a = build_tiny_model("tiny-1m", tiny_tokenizer, seed=1).state_dict()
    b = build_tiny_model("tiny-1m", tiny_tokenizer, seed=1).state_dict()
    c = build_tiny_model("tiny-1m", tiny_tokenizer, seed=2).state_dict()
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(a[name], b[name])
    assert not torch.equal(a[name], c[name])


def test_existing_output_is_refused_unless_overwrite(
    tiny_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    out = make_tiny_model("tiny-1m", tiny_tokenizer, tmp_path / "m", seed=0)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(OutputExistsError, match="output exists"):
        make_tiny_model("tiny-1m", tiny_tokenizer, out, seed=1)
    assert (out / "model.safetensors").read_bytes() == before
    make_tiny_model("tiny-1m", tiny_tokenizer, out, seed=1, overwrite=True)
    assert (out / "model.safetensors").read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp directories left behind
