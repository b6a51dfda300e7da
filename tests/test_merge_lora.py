"""LoRA adapters as task vectors: θ_G + ω·ΔW from the adapter equals merging the materialised model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from skillmerge.errors import ModelError, UsageError
from skillmerge.merge import MergeConfig, run
from skillmerge.merge.vectors import read_lora_adapter
from skillmerge.models.io import save_model
from skillmerge.models.shards import TensorReader


def llama(vocab: int, seed: int, tied: bool) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()


def weights(path: Path) -> dict[str, torch.Tensor]:
    with TensorReader(path) as reader:
        return {name: reader.get(name) for name in reader.names()}


def make_adapter(
    base_dir: Path,
    out: Path,
    *,
    rslora: bool,
    seed: int,
    modules_to_save: list[str] | None = None,
    **extra: object,
) -> Path:
    """A PEFT LoRA on ``base_dir`` with random (non-zero) A and B, saved as an adapter directory."""
    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    lora = LoraConfig(
        r=4,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"],
        use_rslora=rslora,
        modules_to_save=modules_to_save,
        **extra,
    )
    peft_model = get_peft_model(model, lora)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    peft_model.save_pretrained(out)
    return out


def materialise(base_dir: Path, adapter: Path, tok: PreTrainedTokenizerFast, out: Path) -> Path:
    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return save_model(merged, tok, out)


@pytest.fixture(scope="module")
def general(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: PreTrainedTokenizerFast) -> Path:
    return save_model(
        llama(len(tiny_tokenizer), 3, tied=True), tiny_tokenizer, tmp_path_factory.mktemp("g") / "g"
    )


def merge(base: Path, models: list[tuple[Path, float]], out: Path, method: str = "task_arithmetic") -> Path:
    cfg = MergeConfig.model_validate(
        {
            "method": method,
            "base_model": str(base),
            "models": [{"model": str(m), "weight": w} for m, w in models],
        }
    )
    run(cfg, out)
    return out


@pytest.mark.parametrize("rslora", [False, True])
def test_lora_task_vector_equals_merging_the_materialised_model(
    general: Path, tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast, rslora: bool
) -> None:
    adapter = make_adapter(general, tmp_path / "adapter", rslora=rslora, seed=1)
    full = materialise(general, adapter, tiny_tokenizer, tmp_path / "full")
    omega = 0.6
    via_adapter = weights(merge(general, [(adapter, omega)], tmp_path / "a"))
    via_full = weights(merge(general, [(full, omega)], tmp_path / "b"))
    base = weights(general)
    assert sorted(via_adapter) == sorted(via_full)
    changed = 0
    for name in via_full:
        torch.testing.assert_close(via_adapter[name], via_full[name], atol=1e-5, rtol=0, msg=name)
        changed += not torch.equal(via_adapter[name], base[name])
    assert changed == 2 * 3 + 1  # q, v, down in both layers + the embedding: ΔW really was applied


def test_lora_scale_follows_alpha_over_rank_or_root_rank(general: Path, tmp_path: Path) -> None:
    plain = read_lora_adapter(make_adapter(general, tmp_path / "plain", rslora=False, seed=1))
    rs = read_lora_adapter(make_adapter(general, tmp_path / "rs", rslora=True, seed=1))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert plain.modules[name].scale == 16 / 4 and rs.modules[name].scale == 16 / 2
    delta = plain.delta(name)
    a = plain.reader.get(plain.modules[name].a_key)
    b = plain.reader.get(plain.modules[name].b_key)
    torch.testing.assert_close(delta, 4.0 * b @ a)
    embed = plain.delta("model.embed_tokens.weight")
    assert embed.shape == weights(general)["model.embed_tokens.weight"].shape


def test_lora_with_modules_to_save_on_untied_model(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    base = save_model(llama(len(tiny_tokenizer), 4, tied=False), tiny_tokenizer, tmp_path / "base")
    adapter = make_adapter(base, tmp_path / "adapter", rslora=False, seed=2, modules_to_save=["lm_head"])
    full = materialise(base, adapter, tiny_tokenizer, tmp_path / "full")
    via_adapter = weights(merge(base, [(adapter, 0.5)], tmp_path / "a"))
    via_full = weights(merge(base, [(full, 0.5)], tmp_path / "b"))
    assert not torch.equal(via_full["lm_head.weight"], weights(base)["lm_head.weight"])
    for name in via_full:
        torch.testing.assert_close(via_adapter[name], via_full[name], atol=1e-5, rtol=0, msg=name)


def test_lora_and_full_model_merge_together(
    general: Path, tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    adapter = make_adapter(general, tmp_path / "adapter", rslora=False, seed=5)
    full = materialise(general, adapter, tiny_tokenizer, tmp_path / "full")
    got = weights(merge(general, [(adapter, 0.5), (full, 0.25)], tmp_path / "a"))
    want = weights(merge(general, [(full, 0.75)], tmp_path / "b"))
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=0, msg=name)


def test_dora_adapter_is_refused(general: Path, tmp_path: Path) -> None:
    adapter = make_adapter(general, tmp_path / "dora", rslora=False, seed=1, use_dora=True)
    with pytest.raises(ModelError, match="use_dora=true is not supported") as info:
        merge(general, [(adapter, 1.0)], tmp_path / "out")
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


def test_lora_target_missing_from_base_is_refused(general: Path, tmp_path: Path) -> None:
    adapter = make_adapter(general, tmp_path / "adapter", rslora=False, seed=1)
    with TensorReader(adapter / "adapter_model.safetensors") as reader:
        state = {name: reader.get(name) for name in reader.names()}
    from safetensors.torch import save_file

    renamed = {k.replace("layers.1.", "layers.7."): v for k, v in state.items()}
    save_file(renamed, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(ModelError, match=r"LoRA target model\.layers\.7\.\S+ does not exist"):
        merge(general, [(adapter, 1.0)], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_lora_needs_a_base_model(general: Path, tmp_path: Path) -> None:
    adapter = make_adapter(general, tmp_path / "adapter", rslora=False, seed=1)
    cfg = MergeConfig.model_validate({"method": "linear", "models": [{"model": str(adapter)}]})
    with pytest.raises(UsageError, match="needs base_model"):
        run(cfg, tmp_path / "out")


def test_unknown_peft_type_is_refused(general: Path, tmp_path: Path) -> None:
    adapter = make_adapter(general, tmp_path / "adapter", rslora=False, seed=1)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["peft_type"] = "IA3"
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="peft_type IA3 is not supported"):
        merge(general, [(adapter, 1.0)], tmp_path / "out")
