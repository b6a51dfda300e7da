"""The merge's zero-copy paths: a method's in-place form (``into``) is bitwise its ``fn``, tensors mapped
from the file equal tensors read from it (and writing to one leaves the file alone), a tensor written in
pieces is the tensor written whole, and the engine's output is the same file with the in-place forms,
slice-by-slice output and many slices as without them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from skillmerge.errors import ModelError, UsageError
from skillmerge.merge import MergeConfig, engine, methods, run
from skillmerge.merge.methods import get_method, list_methods
from skillmerge.merge.methods.base import CACHE_BLOCK, TensorInputs
from skillmerge.models.fingerprint import checkpoint_fingerprint
from skillmerge.models.shards import TensorReader

SPECIAL = torch.tensor([0.0, -0.0, 1e-45, -1e-45, 1e-38, -3.0e38, 3.0e38, 1.0, -1.0, 0.5])


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def _operands(seed: int, count: int, n: int = 4099) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """fp32 tensors with signed zeros, subnormals, values near the range's edge, and equal entries."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, generator=gen)
    models = [base + 0.01 * torch.randn(n, generator=gen) for _ in range(count)]
    picks = torch.randint(0, len(SPECIAL), (count + 1, n), generator=gen)
    special = torch.rand(count + 1, n, generator=gen) < 0.3
    base = torch.where(special[0], SPECIAL[picks[0]], base)
    models = [torch.where(special[i + 1], SPECIAL[picks[i + 1]], m) for i, m in enumerate(models)]
    models[0][:64] = base[:64]  # θ_i = θ_base: a zero task vector, in both signs of zero
    base[64:128] = -0.0
    models[-1][64:128] = -0.0
    return base, models


CASES = [
    ("task_arithmetic", {}, [0.5, 0.3]),
    ("task_arithmetic", {"normalize": True, "lambda": 0.7}, [1.0, -0.4, 0.25]),
    ("task_arithmetic", {"normalize": True}, [0.5, -0.5]),  # Σ w = 0: no division, as fn
    ("task_arithmetic", {}, [-1.0]),  # task negation
    ("linear", {}, [0.6, 0.4]),
    ("linear", {"normalize": False}, [1.0, -1.0, 0.5]),
    ("wise_ft", {}, [0.35]),
    ("wise_ft", {"omega": 1.0}, [0.2]),
    ("nearswap", {"t": 0.01}, [1.0]),
    ("nearswap", {"t": 0}, [1.0]),  # equal entries: 0/0
    ("nearswap", {"t": 1e30}, [1.0]),  # every entry the model's
]


@pytest.mark.parametrize(("name", "raw", "weights"), CASES)
@pytest.mark.parametrize("n", [4099, 2 * CACHE_BLOCK + 4099])  # one cache block, and several
def test_into_is_bitwise_the_method(name: str, raw: dict, weights: list[float], n: int) -> None:
    method = get_method(name)
    assert method.into is not None
    params = method.params.model_validate(raw)
    for seed in range(3):
        base, models = _operands(seed, len(weights), n)
        deltas = [m - base for m in models] if method.needs_base else None
        inputs = TensorInputs("t", base if method.needs_base else None, models, deltas, weights)
        want = method.fn(inputs, params, torch.Generator())
        out = torch.full_like(base, float("nan"))
        plain = TensorInputs("t", base if method.needs_base else None, models, None, weights)
        with torch.no_grad():
            method.into(plain, params, out)
        assert torch.equal(_bits(out), _bits(want)), (name, raw, seed)


def test_every_in_place_form_belongs_to_an_elementwise_method() -> None:
    # The engine only hands ``into`` slices; a method that ranks or samples must not have one.
    with_into = {m.name for m in list_methods() if m.into is not None}
    assert with_into >= {"task_arithmetic", "linear", "wise_ft", "nearswap"}
    assert all(get_method(name).elementwise for name in with_into)


def test_linear_into_refuses_weights_that_sum_to_zero() -> None:
    method = get_method("linear")
    assert method.into is not None
    inputs = TensorInputs("w", None, [torch.ones(3), torch.ones(3)], None, [1.0, -1.0])
    with pytest.raises(UsageError, match="sum to 0"):
        method.into(inputs, method.params(), torch.empty(3))


def test_a_mapped_tensor_equals_the_read_one_and_writes_stay_private(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "a": torch.randn(3, 1000, generator=gen),
        "b": torch.randn(7, generator=gen).to(torch.bfloat16),
        "c": torch.randn(5000, generator=gen).to(torch.float16),
        "empty": torch.empty(0, 4),
        "i": torch.arange(10, dtype=torch.int64),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with TensorReader(tmp_path) as reader:
        for name, want in tensors.items():
            got = reader.map(name)
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert torch.equal(got, reader.get(name)) and torch.equal(got, want), name
        before = reader.bytes_read
        mapped = reader.map("a")
        assert reader.bytes_read == before + tensors["a"].numel() * 4
        mapped.mul_(0.0)  # copy-on-write: this process's pages only
        assert torch.equal(reader.map("a"), tensors["a"])
    with TensorReader(tmp_path) as fresh:
        assert torch.equal(fresh.get("a"), tensors["a"])
        file = tmp_path / "model.safetensors"
        file.write_bytes(file.read_bytes()[:-100])  # cut short after the header was read
        with pytest.raises(ModelError, match="truncated"):
            fresh.map("c")  # the last tensor: no map past the end, the read names the file


def _rss_file_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_a_mapped_tensor_is_resident_before_its_first_touch(tmp_path: Path) -> None:
    """map() fills the page tables itself (MADV_POPULATE_READ through libc, off the GIL): the read-ahead
    thread pays for the pages, not the merging thread's first touch."""
    tensor = torch.arange(8 * 1024**2, dtype=torch.float32)  # 32 MiB, in the page cache once written
    save_file({"t": tensor}, str(tmp_path / "model.safetensors"))
    with TensorReader(tmp_path) as reader:
        before = _rss_file_bytes()
        mapped = reader.map("t")
        resident = _rss_file_bytes() - before
        assert resident >= 0.9 * tensor.numel() * 4, resident
        assert torch.equal(mapped, tensor)
        del mapped


def test_a_tensor_streamed_in_pieces_is_the_tensor_added_whole(tmp_path: Path) -> None:
    from skillmerge.models.shards import PlannedShardWriter, tensor_bytes

    gen = torch.Generator().manual_seed(1)
    tensors = {
        "a": torch.randn(1000, generator=gen),
        "b": torch.randn(7, 3, generator=gen).to(torch.bfloat16),
    }
    layout = [(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()]
    with PlannedShardWriter(tmp_path / "whole", layout) as whole:
        for name, tensor in tensors.items():
            whole.add(name, tensor)
    with PlannedShardWriter(tmp_path / "pieces", layout) as pieces:
        for name, tensor in tensors.items():
            stream = pieces.open_stream(name)
            data = tensor_bytes(tensor)
            for start in range(0, len(data), 300):
                stream.write(data[start : start + 300])
            stream.close()
    assert pieces.tensor_digests == whole.tensor_digests
    assert (tmp_path / "pieces" / "model.safetensors").read_bytes() == (
        tmp_path / "whole" / "model.safetensors"
    ).read_bytes()
    with PlannedShardWriter(tmp_path / "short", layout) as short:
        stream = short.open_stream("a")
        stream.write(tensor_bytes(tensors["a"])[:400])
        with pytest.raises(ModelError, match="3600 planned bytes never written"):
            stream.close()
        with pytest.raises(ModelError, match="more bytes than planned"):
            stream.write(tensor_bytes(tensors["a"]))
        short.abort()
    assert not list((tmp_path / "short").glob("*.safetensors*"))


def _tiny_family(root: Path) -> tuple[Path, list[Path]]:
    from model_factory import tiny_llama
    from skillmerge.models.io import save_model

    dirs = [save_model(tiny_llama(seed=seed, vocab_size=96), None, root / f"m{seed}") for seed in range(3)]
    return dirs[0], dirs[1:]


@pytest.mark.parametrize("method", ["task_arithmetic", "linear"])
@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_engine_output_is_the_same_with_and_without_the_fast_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, dtype: str | None
) -> None:
    base, models = _tiny_family(tmp_path)
    entries = [{"model": str(m), "weight": w} for m, w in zip(models, [0.7, -0.2], strict=True)]
    cfg = MergeConfig.model_validate(
        {"method": method, "base_model": str(base), "models": entries, "dtype": dtype}
    )
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 100)  # many slices, a ragged last one
    monkeypatch.setattr(engine, "ELEMENTWISE_CHUNK_ELEMENTS", 100)
    fast = run(cfg, tmp_path / "fast", progress=False)
    # The reference: the method's fn on read (not mapped) tensors, whole outputs, no in-place form.
    monkeypatch.setattr(TensorReader, "map", TensorReader.get)
    whole = engine.merge_tensor
    monkeypatch.setattr(
        engine, "merge_tensor", lambda plan, task, loaded, sink=None: whole(plan, task, loaded)
    )
    monkeypatch.setitem(methods._REGISTRY, method, dataclasses.replace(get_method(method), into=None))
    slow = run(cfg, tmp_path / "slow", progress=False)
    assert fast.weights_fingerprint == slow.weights_fingerprint
    assert checkpoint_fingerprint(tmp_path / "fast") == fast.weights_fingerprint


def test_a_cast_that_overflows_is_refused_on_the_fast_path(tmp_path: Path) -> None:
    base, models = _tiny_family(tmp_path)
    entries = [{"model": str(models[0]), "weight": 1e9}]
    cfg = MergeConfig.model_validate(
        {"method": "task_arithmetic", "base_model": str(base), "models": entries, "dtype": "float16"}
    )
    with pytest.raises(ModelError, match="beyond float16's range"):
        run(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
