"""Sharded safetensors: the streaming writer, the lazy reader, and their compatibility with transformers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

from model_factory import tiny_llama
from skillmerge.errors import ModelError, OutputExistsError
from skillmerge.models import shards
from skillmerge.models.shards import INDEX_FILE, SINGLE_FILE, ShardedSafetensorsWriter, TensorReader


def write_state(out: Path, tensors: dict[str, torch.Tensor], max_shard_bytes: int) -> list[Path]:
    with ShardedSafetensorsWriter(out, max_shard_bytes=max_shard_bytes) as writer:
        for name, tensor in tensors.items():
            writer.add(name, tensor)
    return writer.files


def sample_tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {
        "a": torch.randn(16, 16),  # 1024 bytes
        "b": torch.randn(16, 16),
        "c": torch.randn(8).to(torch.bfloat16),
        "d": torch.arange(10, dtype=torch.int64),
        "e": torch.randn(64, 16),  # 4096 bytes: larger than the shard limit below
        "f": torch.tensor(3.5),
    }


def test_one_shard_is_written_as_model_safetensors(tmp_path: Path) -> None:
    tensors = sample_tensors()
    files = write_state(tmp_path / "m", tensors, max_shard_bytes=1 << 30)
    assert [f.name for f in files] == [SINGLE_FILE]
    assert not (tmp_path / "m" / INDEX_FILE).exists()
    loaded = load_file(files[0])
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor)


def test_shards_are_named_and_indexed_like_transformers(tmp_path: Path) -> None:
    tensors = sample_tensors()
    files = write_state(tmp_path / "m", tensors, max_shard_bytes=2048)
    # a (1024) + b (1024) fill one shard; c + d; e alone (over the limit); f.
    names = [f.name for f in files]
    assert names == [
        "model-00001-of-00004.safetensors",
        "model-00002-of-00004.safetensors",
        "model-00003-of-00004.safetensors",
        "model-00004-of-00004.safetensors",
        INDEX_FILE,
    ]
    index = json.loads((tmp_path / "m" / INDEX_FILE).read_text())
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    assert index["metadata"]["total_size"] == total
    assert index["metadata"]["total_parameters"] == sum(t.numel() for t in tensors.values())
    assert index["weight_map"] == {
        "a": names[0],
        "b": names[0],
        "c": names[1],
        "d": names[1],
        "e": names[2],
        "f": names[3],
    }
    assert list(index["weight_map"]) == sorted(index["weight_map"])
    assert not list((tmp_path / "m").glob(".shard-*"))  # no temporary names left


def test_full_shard_is_flushed_before_the_next_tensor_arrives(tmp_path: Path) -> None:
    writer = ShardedSafetensorsWriter(tmp_path, max_shard_bytes=2048)
    writer.add("a", torch.zeros(16, 16))
    writer.add("b", torch.zeros(16, 16))
    assert not list(tmp_path.glob(".shard-*"))  # still fits: held in memory
    writer.add("c", torch.zeros(4))
    assert len(list(tmp_path.glob(".shard-*"))) == 1  # a + b went to disk, only c is held
    assert list(writer._pending) == ["c"]
    writer.finish()
    assert (tmp_path / INDEX_FILE).is_file()


@pytest.mark.parametrize("tie", [True, False])
def test_transformers_loads_sharded_output_with_identical_logits(tmp_path: Path, tie: bool) -> None:
    model = tiny_llama(tie)
    state = model.state_dict()
    if tie:  # transformers stores a tied head once, under the embedding's name
        del state["lm_head.weight"]
    model.config.save_pretrained(tmp_path)
    files = write_state(tmp_path, state, max_shard_bytes=8 * 1024)
    assert len(files) > 2
    loaded = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[1, 5, 9, 33, 2, 63]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)


def test_reader_reads_transformers_sharded_checkpoints(tmp_path: Path) -> None:
    model = tiny_llama(tie=True)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / INDEX_FILE).is_file()
    state = model.state_dict()
    with TensorReader(tmp_path) as reader:
        assert reader.names() == sorted(k for k in state if k != "lm_head.weight")
        assert len(reader.files()) > 1
        for name in reader.names():
            assert reader.shape(name) == tuple(state[name].shape)
            assert reader.dtype(name) == torch.float32
            assert torch.equal(reader.get(name), state[name])


def test_reader_gives_names_shapes_dtypes_and_data(tmp_path: Path) -> None:
    tensors = sample_tensors()
    write_state(tmp_path, tensors, max_shard_bytes=2048)
    with TensorReader(tmp_path) as reader:
        assert reader.names() == sorted(tensors)
        assert "c" in reader and "zz" not in reader
        assert reader.dtype("c") == torch.bfloat16
        assert reader.dtype("d") == torch.int64
        assert reader.shape("e") == (64, 16)
        assert reader.shape("f") == ()
        for name, tensor in tensors.items():
            assert torch.equal(reader.get(name), tensor)
        with pytest.raises(ModelError, match="no tensor named zz"):
            reader.get("zz")


def test_reader_accepts_a_single_safetensors_file(tmp_path: Path) -> None:
    save_file({"x": torch.ones(3)}, tmp_path / "w.safetensors")
    with TensorReader(tmp_path / "w.safetensors") as reader:
        assert reader.names() == ["x"]
        assert torch.equal(reader.get("x"), torch.ones(3))


def test_missing_shard_is_refused(tmp_path: Path) -> None:
    files = write_state(tmp_path, sample_tensors(), max_shard_bytes=2048)
    files[1].unlink()
    with pytest.raises(ModelError, match=rf"{files[1].name}: shard file is missing"):
        TensorReader(tmp_path)


def test_index_naming_a_tensor_absent_from_its_shard_is_refused(tmp_path: Path) -> None:
    write_state(tmp_path, sample_tensors(), max_shard_bytes=2048)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    index["weight_map"]["ghost"] = "model-00001-of-00004.safetensors"
    (tmp_path / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(
        ModelError, match=r"model-00001-of-00004\.safetensors: tensor ghost is named by the index"
    ):
        TensorReader(tmp_path)


def test_truncated_safetensors_is_refused(tmp_path: Path) -> None:
    write_state(tmp_path, {"big": torch.randn(64, 64), "small": torch.randn(4)}, max_shard_bytes=1 << 30)
    path = tmp_path / SINGLE_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelError, match=r"model\.safetensors: tensor \w+: data runs past the end"):
        TensorReader(tmp_path)


def test_corrupt_safetensors_header_is_refused(tmp_path: Path) -> None:
    (tmp_path / SINGLE_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"\0" * 8)
    with pytest.raises(ModelError, match=r"model\.safetensors: corrupt safetensors header"):
        TensorReader(tmp_path)
    (tmp_path / SINGLE_FILE).write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match=r"model\.safetensors: corrupt or truncated"):
        TensorReader(tmp_path)


def test_directory_without_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no model\.safetensors or model\.safetensors\.index\.json"):
        TensorReader(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        TensorReader(tmp_path / "nope")


def test_malformed_index_is_refused(tmp_path: Path) -> None:
    (tmp_path / INDEX_FILE).write_text('{"metadata": {}}')
    with pytest.raises(ModelError, match="not a valid safetensors index"):
        TensorReader(tmp_path)


def test_writer_error_removes_its_partial_files(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        ShardedSafetensorsWriter(tmp_path, max_shard_bytes=1024) as w,
    ):
        w.add("a", torch.zeros(16, 16))
        w.add("b", torch.zeros(16, 16))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_tensor_added_twice_is_refused(tmp_path: Path) -> None:
    writer = ShardedSafetensorsWriter(tmp_path)
    writer.add("a", torch.zeros(2))
    with pytest.raises(ModelError, match="tensor a added twice"):
        writer.add("a", torch.ones(2))


def test_writer_refuses_a_directory_that_already_holds_weights(tmp_path: Path) -> None:
    save_file({"x": torch.ones(1)}, tmp_path / SINGLE_FILE)
    with pytest.raises(OutputExistsError, match="already holds weight files"):
        ShardedSafetensorsWriter(tmp_path)


def test_views_and_shared_storage_are_written_as_separate_tensors(tmp_path: Path) -> None:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tensors = {"whole": base, "same": base, "row": base[1], "col": base[:, 2]}
    write_state(tmp_path, tensors, max_shard_bytes=1 << 20)
    loaded = load_file(tmp_path / SINGLE_FILE)
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor)


def test_shard_file_names_use_five_digits() -> None:
    assert shards.shard_file_name(3, 12) == "model-00003-of-00012.safetensors"


def test_shards_get_ordinary_file_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        files = write_state(tmp_path, sample_tensors(), max_shard_bytes=2048)
    finally:
        os.umask(mask)
    for file in files:
        assert file.stat().st_mode & 0o777 == 0o644, file.name
