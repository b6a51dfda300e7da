"""Fingerprints: content identity independent of sharding; cheap header identity; file hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from model_factory import tiny_llama
from skillmerge.errors import ModelError
from skillmerge.models.fingerprint import (
    checkpoint_fingerprint,
    file_fingerprint,
    fingerprint_from_digests,
    header_fingerprint,
)
from skillmerge.models.shards import SINGLE_FILE, ShardedSafetensorsWriter, TensorReader


def weights(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {
        "layer.0.weight": torch.randn(32, 32),
        "layer.1.weight": torch.randn(32, 32),
        "layer.1.bias": torch.randn(32),
        "norm.weight": torch.ones(32).to(torch.bfloat16),
        "step": torch.tensor(7),
    }


def write(out: Path, tensors: dict[str, torch.Tensor], max_shard_bytes: int = 1 << 30) -> Path:
    with ShardedSafetensorsWriter(out, max_shard_bytes=max_shard_bytes) as writer:
        for name, tensor in tensors.items():
            writer.add(name, tensor)
    return out


def test_same_weights_in_one_or_three_shards_have_one_fingerprint(tmp_path: Path) -> None:
    one = write(tmp_path / "one", weights())
    three = write(tmp_path / "three", weights(), max_shard_bytes=4096)
    assert len(TensorReader(one).files()) == 1
    assert len(TensorReader(three).files()) == 3
    assert checkpoint_fingerprint(one) == checkpoint_fingerprint(three)


def test_tensor_order_does_not_change_the_fingerprint(tmp_path: Path) -> None:
    tensors = weights()
    forward = write(tmp_path / "f", tensors, max_shard_bytes=4096)
    backward = write(tmp_path / "b", dict(reversed(list(tensors.items()))), max_shard_bytes=4096)
    assert checkpoint_fingerprint(forward) == checkpoint_fingerprint(backward)


def test_one_changed_value_changes_the_fingerprint(tmp_path: Path) -> None:
    tensors = weights()
    base = write(tmp_path / "a", tensors)
    tensors["layer.1.bias"] = tensors["layer.1.bias"].clone()
    tensors["layer.1.bias"][5] += 1e-3
    changed = write(tmp_path / "b", tensors)
    assert checkpoint_fingerprint(base) != checkpoint_fingerprint(changed)


def test_dtype_shape_and_name_are_part_of_the_fingerprint(tmp_path: Path) -> None:
    base = checkpoint_fingerprint(write(tmp_path / "base", {"w": torch.zeros(4, 4)}))
    assert (
        checkpoint_fingerprint(write(tmp_path / "dtype", {"w": torch.zeros(4, 4, dtype=torch.int32)})) != base
    )
    assert checkpoint_fingerprint(write(tmp_path / "shape", {"w": torch.zeros(2, 8)})) != base
    assert checkpoint_fingerprint(write(tmp_path / "name", {"v": torch.zeros(4, 4)})) != base


def test_writer_digests_give_the_fingerprint_of_the_written_files(tmp_path: Path) -> None:
    with ShardedSafetensorsWriter(tmp_path, max_shard_bytes=4096) as writer:
        for name, tensor in weights().items():
            writer.add(name, tensor)
    assert fingerprint_from_digests(writer.tensor_digests) == checkpoint_fingerprint(tmp_path)


def test_transformers_checkpoint_and_ours_agree_on_the_fingerprint(tmp_path: Path) -> None:
    model = tiny_llama(tie=False)
    model.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    write(tmp_path / "ours", model.state_dict())
    assert checkpoint_fingerprint(tmp_path / "hf") == checkpoint_fingerprint(tmp_path / "ours")


def test_fingerprint_matches_the_formula(tmp_path: Path) -> None:
    tensor = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    write(tmp_path, {"w": tensor})
    data_sha = hashlib.sha256(tensor.numpy().tobytes()).hexdigest()
    expected = hashlib.sha256(f"w\tF32\t[2, 3]\t{data_sha}\n".encode()).hexdigest()
    assert checkpoint_fingerprint(tmp_path) == expected


def test_header_fingerprint_tracks_layout_not_data(tmp_path: Path) -> None:
    a = write(tmp_path / "a", weights(seed=0))
    b = write(tmp_path / "b", weights(seed=1))
    sharded = write(tmp_path / "c", weights(seed=0), max_shard_bytes=4096)
    reshaped = write(tmp_path / "d", {**weights(seed=0), "layer.1.bias": torch.zeros(16)})
    assert header_fingerprint(a) == header_fingerprint(a)
    # documented limit: same layout with other values gives the same cheap fingerprint
    assert header_fingerprint(a) == header_fingerprint(b)
    assert header_fingerprint(a) != header_fingerprint(sharded)
    assert header_fingerprint(a) != header_fingerprint(reshaped)


def test_file_fingerprint_is_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = bytes(range(256)) * 9000  # > 2 MiB: several chunks
    path.write_bytes(data)
    assert file_fingerprint(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(ModelError, match="blob2: file does not exist"):
        file_fingerprint(tmp_path / "blob2")


def test_fingerprint_of_a_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    write(tmp_path, weights())
    path = tmp_path / SINGLE_FILE
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelError, match="data runs past the end"):
        checkpoint_fingerprint(tmp_path)
