"""PlannedShardWriter, the merge's output writer: files byte-identical to ShardedSafetensorsWriter's, each
tensor written as it arrives (any order), and refusals for tensors outside the planned layout."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from skillmerge.errors import ModelError
from skillmerge.models.shards import (
    INDEX_FILE,
    TORCH_TO_SAFETENSORS,
    PlannedShardWriter,
    ShardedSafetensorsWriter,
)


def mixed_tensors() -> dict[str, torch.Tensor]:
    """Every storable dtype, odd sizes (so alignment matters) and an empty tensor."""
    gen = torch.Generator().manual_seed(0)
    dtypes = list(TORCH_TO_SAFETENSORS)
    tensors = {
        f"t{i:02d}": (torch.randn(37 * (i + 1), generator=gen) * 50).to(dtypes[i % len(dtypes)])
        for i in range(2 * len(dtypes))
    }
    tensors["empty"] = torch.zeros(0, 3)
    return tensors


@pytest.mark.parametrize("max_shard_bytes", [2**30, 1000])
def test_planned_writer_files_are_byte_identical_to_the_buffered_writer(
    tmp_path: Path, max_shard_bytes: int
) -> None:
    tensors = mixed_tensors()
    with ShardedSafetensorsWriter(tmp_path / "a", max_shard_bytes=max_shard_bytes) as writer:
        for name, tensor in tensors.items():
            writer.add(name, tensor)
    layout = [(name, t.dtype, tuple(t.shape)) for name, t in tensors.items()]
    with PlannedShardWriter(tmp_path / "b", layout, max_shard_bytes=max_shard_bytes) as planned:
        for name, tensor in reversed(tensors.items()):  # arrival order does not matter
            planned.add(name, tensor)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert (len(files) > 3) == (max_shard_bytes == 1000)
    assert all(filecmp.cmp(tmp_path / "a" / f, tmp_path / "b" / f, shallow=False) for f in files)
    assert planned.tensor_digests == writer.tensor_digests
    if max_shard_bytes == 1000:
        assert (tmp_path / "b" / INDEX_FILE).is_file()
    for file in (tmp_path / "b").glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                assert torch.equal(handle.get_tensor(name), tensors[name])


def test_planned_writer_refuses_tensors_outside_the_layout(tmp_path: Path) -> None:
    layout = [("a", torch.float32, (2, 3)), ("b", torch.bfloat16, (4,))]
    writer = PlannedShardWriter(tmp_path / "out", layout)
    with pytest.raises(ModelError, match="tensor c is not in the planned layout"):
        writer.add("c", torch.zeros(2, 3))
    with pytest.raises(ModelError, match=r"tensor a: got torch.float32 \[3, 2\], planned"):
        writer.add("a", torch.zeros(3, 2))
    with pytest.raises(ModelError, match=r"tensor b: got torch\.float32"):
        writer.add("b", torch.zeros(4))
    writer.add("a", torch.ones(2, 3))
    with pytest.raises(ModelError, match="tensor a added twice"):
        writer.add("a", torch.ones(2, 3))
    with pytest.raises(ModelError, match="tensor b was planned but never written"):
        writer.finish()
    writer.abort()
    assert list((tmp_path / "out").iterdir()) == []


def test_planned_writer_with_an_empty_layout_writes_one_empty_file(tmp_path: Path) -> None:
    with PlannedShardWriter(tmp_path / "out", []) as writer:
        pass
    assert [f.name for f in writer.files] == ["model.safetensors"]
    with safe_open(str(writer.files[0]), framework="pt") as handle:
        assert list(handle.keys()) == []
