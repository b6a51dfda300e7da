"""Saving and loading HF model directories: round trip, tied weights, atomicity under a full disk."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from model_factory import tiny_llama as make_tiny_llama
from skillmerge.errors import ModelError, OutputExistsError
from skillmerge.models import shards
from skillmerge.models.fingerprint import checkpoint_fingerprint
from skillmerge.models.io import is_model_dir, load_model, read_manifest, save_model
from skillmerge.models.shards import INDEX_FILE, SINGLE_FILE

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over 61 printable characters plus 3 specials (vocab 64)."""
    specials = ["<unk>", "<s>", "</s>"]
    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 <>/.?!"[:61]
    vocab = {token: i for i, token in enumerate(specials + list(chars))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_llama(tie: bool = True, seed: int = 0) -> LlamaForCausalLM:
    return make_tiny_llama(tie, seed, bos_token_id=1, eos_token_id=2, pad_token_id=2)


IDS = torch.tensor([[1, 7, 20, 33, 4, 60, 2]])


def logits(model: LlamaForCausalLM) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


@pytest.mark.parametrize("max_shard_bytes", [1 << 30, 16 * 1024])
def test_saved_model_loads_back_with_identical_logits(tmp_path: Path, max_shard_bytes: int) -> None:
    model, tokenizer = tiny_llama(), char_tokenizer()
    out = save_model(model, tokenizer, tmp_path / "m", max_shard_bytes=max_shard_bytes)
    assert is_model_dir(out)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "manifest.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    loaded, loaded_tokenizer = load_model(out)
    assert torch.equal(logits(loaded), logits(model))
    assert loaded.generation_config.eos_token_id == 2
    text = "Hi there. 42?"
    assert loaded_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(loaded_tokenizer(text)["input_ids"]) == len(text)


def test_chat_template_survives_the_round_trip(tmp_path: Path) -> None:
    out = save_model(tiny_llama(), char_tokenizer(), tmp_path / "m")
    _, tokenizer = load_model(out)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert rendered == "<user>hi</s><assistant>"


def test_sharded_save_writes_an_index(tmp_path: Path) -> None:
    out = save_model(tiny_llama(), char_tokenizer(), tmp_path / "m", max_shard_bytes=16 * 1024)
    index = json.loads((out / INDEX_FILE).read_text())
    shard_names = sorted(set(index["weight_map"].values()))
    assert len(shard_names) > 1
    assert all((out / name).is_file() for name in shard_names)
    assert not (out / SINGLE_FILE).exists()


def test_tied_embeddings_are_stored_once(tmp_path: Path) -> None:
    model = tiny_llama(tie=True)
    out = save_model(model, char_tokenizer(), tmp_path / "m")
    stored = load_file(out / SINGLE_FILE)
    assert "lm_head.weight" not in stored
    assert "model.embed_tokens.weight" in stored
    loaded, _ = load_model(out)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)


def test_untied_head_is_stored(tmp_path: Path) -> None:
    model = tiny_llama(tie=False)
    out = save_model(model, char_tokenizer(), tmp_path / "m")
    stored = load_file(out / SINGLE_FILE)
    assert torch.equal(stored["lm_head.weight"], model.lm_head.weight)
    loaded, _ = load_model(out)
    assert torch.equal(logits(loaded), logits(model))


def test_manifest_records_the_weights_fingerprint_and_caller_fields(tmp_path: Path) -> None:
    out = save_model(
        tiny_llama(),
        char_tokenizer(),
        tmp_path / "m",
        max_shard_bytes=16 * 1024,
        manifest={"kind": "test", "seed": 3},
    )
    manifest = read_manifest(out)
    assert manifest["kind"] == "test"
    assert manifest["seed"] == 3
    assert manifest["weights_fingerprint"] == checkpoint_fingerprint(out)
    assert manifest["library_versions"]["torch"] == torch.__version__
    assert manifest["weight_files"][-1] == INDEX_FILE


def test_extra_files_are_written(tmp_path: Path) -> None:
    out = save_model(
        tiny_llama(), None, tmp_path / "m", extra_files={"README.md": "# card\n", "raw.bin": b"\x00\x01"}
    )
    assert (out / "README.md").read_text() == "# card\n"
    assert (out / "raw.bin").read_bytes() == b"\x00\x01"
    assert not (out / "tokenizer.json").exists()


def fail_after_first_shard(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the second shard write hit a full disk, as a real ENOSPC would surface from safetensors."""
    written: list[str] = []
    real_save_file = shards.save_file

    def save_file(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str]) -> None:
        if written:
            Path(filename).write_bytes(b"half a shard")  # a partial file, as a full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        real_save_file(tensors, filename, metadata=metadata)
        written.append(filename)

    monkeypatch.setattr(shards, "save_file", save_file)
    return written


def test_disk_full_mid_save_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = fail_after_first_shard(monkeypatch)
    with pytest.raises(OSError) as caught:
        save_model(tiny_llama(), char_tokenizer(), tmp_path / "m", max_shard_bytes=16 * 1024)
    assert caught.value.errno == errno.ENOSPC
    assert len(written) == 1  # the failure really came after a complete shard
    assert list(tmp_path.iterdir()) == []  # no destination, no temporary sibling


def test_disk_full_during_overwrite_keeps_the_old_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tiny_llama(seed=1)
    out = save_model(old, char_tokenizer(), tmp_path / "m")
    fail_after_first_shard(monkeypatch)
    with pytest.raises(OSError):
        save_model(tiny_llama(seed=2), char_tokenizer(), out, overwrite=True, max_shard_bytes=16 * 1024)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    monkeypatch.undo()
    loaded, _ = load_model(out)
    assert torch.equal(logits(loaded), logits(old))


def test_existing_destination_is_refused_unless_overwrite(tmp_path: Path) -> None:
    first, second = tiny_llama(seed=1), tiny_llama(seed=2)
    out = save_model(first, char_tokenizer(), tmp_path / "m")
    before = checkpoint_fingerprint(out)
    with pytest.raises(OutputExistsError, match="output exists"):
        save_model(second, char_tokenizer(), out)
    assert checkpoint_fingerprint(out) == before
    save_model(second, char_tokenizer(), out, overwrite=True)
    assert checkpoint_fingerprint(out) != before
    loaded, _ = load_model(out)
    assert torch.equal(logits(loaded), logits(second))
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_missing_model_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model directory does not exist"):
        load_model(tmp_path / "nope")


def test_directory_without_config_is_refused(tmp_path: Path) -> None:
    out = save_model(tiny_llama(), char_tokenizer(), tmp_path / "m")
    (out / "config.json").unlink()
    assert not is_model_dir(out)
    with pytest.raises(ModelError, match=r"no config\.json"):
        load_model(out)


def test_missing_shard_is_refused_before_transformers_loads(tmp_path: Path) -> None:
    out = save_model(tiny_llama(), char_tokenizer(), tmp_path / "m", max_shard_bytes=16 * 1024)
    victim = sorted(out.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(ModelError, match=rf"{victim.name}: shard file is missing"):
        load_model(out)


def test_missing_tokenizer_is_refused(tmp_path: Path) -> None:
    out = save_model(tiny_llama(), None, tmp_path / "m")
    with pytest.raises(ModelError, match="no tokenizer files"):
        load_model(out)
