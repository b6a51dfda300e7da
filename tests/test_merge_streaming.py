"""Streamed TIES, DARE, breadcrumbs and DELLA: the same output as the whole-tensor methods, in slices.

A streamed method reads its inputs slice by slice for per-tensor statistics (an exact top-k threshold by
radix select, the norms of a norm rescale, where each model's random draws begin), then merges one slice
at a time. Its output must equal the whole-tensor function's bitwise — ties in magnitude, zeros, density
edges and random masks included — and no temporary may grow with the tensor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import PreTrainedTokenizerFast

from skillmerge.errors import ModelError
from skillmerge.merge import MergeConfig, engine, methods, run
from skillmerge.merge.engine import tensor_seed
from skillmerge.merge.methods import get_method
from skillmerge.merge.methods.base import TensorInputs, TensorSlices
from skillmerge.merge.methods.sparsify import top_k_mask
from skillmerge.merge.methods.topk import TopKMask, magnitude_bits, top_k_cuts
from skillmerge.merge.plan import build_plan
from skillmerge.models.io import save_model

STREAMED = ("ties", "dare_linear", "dare_ties", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear")


def _inputs(
    shape: tuple[int, ...], count: int, seed: int, *, levels: int | None = None
) -> list[torch.Tensor]:
    """θ_base then ``count`` models. With ``levels``, task-vector entries take few values (many equal
    magnitudes, ±x pairs), and a third of them are exactly zero; −0.0 appears too."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=gen)
    tensors = [base]
    for _ in range(count):
        delta = torch.randn(shape, generator=gen) * 0.05
        if levels is not None:
            delta = torch.round(delta * levels / 0.1) * (0.1 / levels)
            delta[torch.rand(shape, generator=gen) < 0.33] = 0.0
            delta.view(-1)[::7] = -0.0
        tensors.append(base + delta)
    return tensors


def _method_params(name: str, rescale: str | None) -> Any:
    """The method's defaults (``rescale`` None), no rescale ("off"), or a rescale by that norm."""
    if rescale is None:
        return get_method(name).params()
    if rescale == "off":
        return get_method(name).params(rescale=False)
    return get_method(name).params(rescale=True, rescale_norm=rescale)


def _model_params(name: str, densities: list[float]) -> list[Any]:
    method = get_method(name)
    out = []
    for density in densities:
        fields: dict[str, Any] = {"density": density}
        if name.startswith("breadcrumbs"):
            fields["gamma"] = 0.05
        if name.startswith("della"):
            fields["epsilon"] = min(0.1, density, 1 - density) if density < 1 else 0.1
        out.append(method.model_params(**fields))
    return out


def whole(name: str, tensors: list[torch.Tensor], weights: list[float], params: Any, model_params: list[Any]):
    base, *models = tensors
    inputs = TensorInputs("t", base, models, [m - base for m in models], weights, model_params)
    generator = torch.Generator().manual_seed(tensor_seed(7, "t"))
    return get_method(name).fn(inputs, params, generator)


def streamed(
    name: str,
    tensors: list[torch.Tensor],
    weights: list[float],
    params: Any,
    model_params: list[Any],
    slice_elements: int,
    in_place: bool = False,
) -> torch.Tensor:
    """The streamed merge, slice by slice through ``merge`` (or ``into``, which must then exist)."""
    base, *models = tensors
    slices = TensorSlices(
        "t",
        tuple(base.shape),
        base.reshape(-1),
        [m.reshape(-1) for m in models],
        weights,
        model_params,
        slice_elements=slice_elements,
    )
    generator = torch.Generator().manual_seed(tensor_seed(7, "t"))
    method = get_method(name)
    assert method.streamed is not None
    merge = method.streamed(slices, params, generator)
    parts = []
    for start, stop in slices.ranges(merge.align):
        assert (stop - start) % merge.align == 0 or stop == slices.numel
        if in_place:
            assert merge.into is not None
            parts.append(torch.full((stop - start,), float("nan")))
            merge.into(start, stop, parts[-1])
        else:
            parts.append(merge.merge(start, stop))
    return torch.cat(parts).reshape(base.shape)


def assert_bitwise(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal bit patterns (so −0.0 ≠ +0.0 counts as a difference)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    differ = got.view(torch.int32) != want.view(torch.int32)
    assert not bool(differ.any()), f"{int(differ.sum())} of {got.numel()} entries differ"


@pytest.mark.parametrize("name", STREAMED)
@pytest.mark.parametrize(
    "densities",
    [[0.5, 0.5], [0.3, 1.0, 0.7], [1e-4, 0.999], [1.0, 1.0], [0.05, 0.9999, 0.2]],
    ids=["half", "one-at-1", "edges", "all-1", "extreme"],
)
@pytest.mark.parametrize("levels", [None, 3], ids=["distinct", "many-ties"])
def test_streamed_equals_whole_tensor_bitwise(name: str, densities: list[float], levels: int | None) -> None:
    if name.startswith("della") and any(0 < d < 1 and min(d, 1 - d) == 0 for d in densities):
        pytest.skip("no ε fits")
    tensors = _inputs((37, 53), len(densities), seed=len(densities) * 10 + (levels or 0), levels=levels)
    weights = [0.7, -0.4, 1.1][: len(densities)]
    params = _method_params(name, None)
    model_params = _model_params(name, densities)
    want = whole(name, tensors, weights, params, model_params)
    for slice_elements in (64, 53 * 3, 10**6):  # many partial slices, whole rows, one slice
        for in_place in (False, True):  # merge(), and the in-place form: the same bits
            got = streamed(name, tensors, weights, params, model_params, slice_elements, in_place)
            assert_bitwise(got, want)


@pytest.mark.parametrize("name", ["ties", "dare_ties", "breadcrumbs", "della_linear"])
@pytest.mark.parametrize("rescale", ["off", "density", "l1", "l2", "linf"])
def test_streamed_rescales_equal_whole_tensor(name: str, rescale: str) -> None:
    """Norm rescales sum |τ| per slice in float64 in both paths; on these sizes the sums are exact, so
    the factor, and the output, are bitwise equal (in general: equal up to the factor's last bit)."""
    tensors = _inputs((29, 41), 2, seed=5, levels=5)
    weights = [0.6, 0.5]
    params = _method_params(name, rescale)
    model_params = _model_params(name, [0.4, 0.7])
    want = whole(name, tensors, weights, params, model_params)
    for slice_elements in (50, 41 * 4):
        assert_bitwise(streamed(name, tensors, weights, params, model_params, slice_elements), want)


@pytest.mark.parametrize("shape", [(), (1,), (5,), (300,), (2, 1), (3, 1, 7), (0, 4)])
@pytest.mark.parametrize("name", ["ties", "breadcrumbs_ties", "dare_linear", "della"])
def test_streamed_odd_shapes_equal_whole_tensor(name: str, shape: tuple[int, ...]) -> None:
    tensors = _inputs(shape, 2, seed=3, levels=2)
    weights = [1.0, 0.5]
    params = _method_params(name, None)
    model_params = _model_params(name, [0.5, 0.25])
    want = whole(name, tensors, weights, params, model_params)
    if not want.numel():
        return  # the engine merges empty tensors whole
    for slice_elements in (1, 4, 1000):
        assert_bitwise(streamed(name, tensors, weights, params, model_params, slice_elements), want)


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), float("-inf"), -float("nan")])
def test_the_counting_pass_and_the_norms_tell_whether_every_magnitude_was_finite(bad: float | None) -> None:
    from skillmerge.merge.methods.sparsify import NormSum

    values = torch.randn(1000, generator=torch.Generator().manual_seed(4))
    values[0] = torch.finfo(torch.float32).max  # the largest finite magnitude is still finite
    if bad is not None:
        values[700] = bad
    cuts = top_k_cuts(lambda: [magnitude_bits(values[:600]), magnitude_bits(values[600:])], 1000, [10, 0])
    assert [cut.finite for cut in cuts] == [bad is None] * 2
    assert not top_k_cuts(lambda: [magnitude_bits(values)], 1000, [1000])[0].finite  # no pass, no word
    for norm in ("l1", "l2", "linf"):
        total = NormSum(norm)  # type: ignore[arg-type]
        for part in (values[:600], values[600:], values[:5]):  # NaN must survive a later, larger slice
            total.add(part)
        assert np.isfinite(total.value) == (bad is None), norm


@pytest.mark.parametrize("k_fraction", [0.0, 1e-3, 0.25, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("data", ["normal", "ties", "zeros", "tiny", "huge"])
def test_radix_select_keeps_the_same_set_as_top_k_mask(k_fraction: float, data: str) -> None:
    gen = torch.Generator().manual_seed(1)
    n = 5000
    values = {
        "normal": torch.randn(n, generator=gen),
        "ties": torch.randint(-3, 4, (n,), generator=gen).float(),  # 7 values, ±x share a magnitude
        "zeros": torch.zeros(n),
        "tiny": torch.randn(n, generator=gen) * 1e-40,  # subnormal magnitudes
        "huge": torch.randn(n, generator=gen) * 1e38,
    }[data]
    k = int(k_fraction * n)
    want = top_k_mask(values.abs(), k)
    (cut,) = top_k_cuts(lambda: (magnitude_bits(values[i : i + 333]) for i in range(0, n, 333)), n, [k])
    mask = TopKMask(cut)
    got = torch.cat([mask(magnitude_bits(values[i : i + 333])) for i in range(0, n, 333)])
    assert torch.equal(got, want) and int(got.sum()) == k


def test_draws_of_any_slices_are_the_whole_draw() -> None:
    """What streamed DARE/DELLA rely on: a slice's draws depend on its position only, odd starts included."""
    from draw_reference import ref_draw_words
    from skillmerge.merge.methods.draws import Draws

    draws = Draws.take(torch.Generator().manual_seed(9))
    whole = draws.words(0, 100_003)
    assert np.array_equal(whole, ref_draw_words(torch.Generator().manual_seed(9), 100_003))
    sizes = [1, 15, 16, 17, 4093, 65536, 30325]
    starts = np.cumsum([0, *sizes[:-1]])
    parts = [draws.words(int(start), size) for start, size in zip(starts, sizes, strict=True)]
    assert sum(sizes) == 100_003 and np.array_equal(np.concatenate(parts), whole)
    keep = torch.cat([draws.keep(int(start), size, 0.3) for start, size in zip(starts, sizes, strict=True)])
    assert torch.equal(keep, torch.from_numpy(whole < np.ceil(0.3 * 2**32)))
    assert abs(float(keep.float().mean()) - 0.3) < 0.005
    uniform = draws.uniform(7, 1000)
    assert uniform.dtype == torch.float32 and float(uniform.min()) >= 0 and float(uniform.max()) < 1
    assert torch.equal(uniform, torch.from_numpy((whole[7:1007] >> 8).astype(np.float32) / 2**24))
    assert bool(draws.keep(5, 40, 1.0).all()) and draws.keep(0, 0, 0.5).numel() == 0
    with pytest.raises(ValueError, match="non-negative"):
        draws.words(-1, 3)


# --- memory: no temporary grows with the tensor --------------------------------------------------------


class LargestAllocations(TorchDispatchMode):
    """Records the byte size of every new storage an aten op returns (views and in-place ops excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        seen = {
            t.untyped_storage().data_ptr()
            for t in torch.utils._pytree.tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
                self.sizes.append(t.untyped_storage().nbytes())
        return out


@contextmanager
def allocations() -> Iterator[LargestAllocations]:
    with LargestAllocations() as probe:
        yield probe


@pytest.mark.parametrize("name", STREAMED)
def test_streamed_temporaries_are_bounded_by_the_slice_not_the_tensor(name: str) -> None:
    shape = (512, 1024)  # 2 MiB per fp32 operand
    tensors = _inputs(shape, 2, seed=2)
    weights = [0.5, 0.5]
    params = _method_params(name, "l1" if name.startswith(("della", "dare")) else None)
    model_params = _model_params(name, [0.3, 0.6])
    slice_elements = 4096
    tensor_bytes = tensors[0].numel() * 4
    with allocations() as probe:
        got = streamed(name, tensors, weights, params, model_params, slice_elements)
    parts = [s for s in probe.sizes if s < tensor_bytes]
    # the one whole-tensor allocation is the test's own torch.cat of the output
    assert sorted(probe.sizes, reverse=True)[1] < tensor_bytes and len(parts) == len(probe.sizes) - 1
    # slices of int64 (cumsum of a tie mask) or fp64 (norm sums), and the 512 KiB radix histogram
    assert max(parts) <= max(8 * 1024, 8 * slice_elements, 8 * 65536), max(parts)
    with allocations() as probe:  # the probe sees the whole-tensor method's temporaries
        want = whole(name, tensors, weights, params, model_params)
    assert sum(size >= tensor_bytes for size in probe.sizes) >= 3
    assert_bitwise(got, want)


# --- the engine ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: PreTrainedTokenizerFast) -> list[Path]:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    root = tmp_path_factory.mktemp("streaming")
    paths = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = LlamaForCausalLM(config).eval()
        state = {k: v.clone() for k, v in base.state_dict().items()}
        for k in range(3):
            if k:
                gen = torch.Generator().manual_seed(k)
                with torch.no_grad():
                    for name, param in base.named_parameters():
                        noise = torch.randn(param.shape, generator=gen) * 0.02
                        # every fourth entry unchanged: zeros in the task vectors
                        noise.view(-1)[::4] = 0.0
                        param.copy_(state[name] + noise)
            paths.append(save_model(base, tiny_tokenizer, root / f"m{k}", max_shard_bytes=2**30))
    return paths


def _config(name: str, paths: list[Path], **parameters: Any) -> MergeConfig:
    base, *skills = paths
    per_model = [{"density": 0.45}, {"density": 0.8}]
    if name.startswith("breadcrumbs"):
        per_model = [{**p, "gamma": 0.02} for p in per_model]
    entries = [
        {"model": str(m), "weight": w, "parameters": p}
        for m, w, p in zip(skills, [0.8, 0.6], per_model, strict=True)
    ]
    return MergeConfig.model_validate(
        {"method": name, "base_model": str(base), "models": entries, "seed": 11, "parameters": parameters}
    )


def assert_engine_streams_bitwise(
    name: str, cfg: MergeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine runs ``name``'s streamed form on every tensor (slices of 1,000 entries: the embedding
    spans many), and the merged weights equal the whole-tensor merge's bit for bit."""
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 1000)
    calls: list[str] = []
    method = get_method(name)
    assert method.streamed is not None and not method.elementwise

    def counting(slices: TensorSlices, params: Any, rng: torch.Generator) -> Any:
        calls.append(slices.name)
        return method.streamed(slices, params, rng)

    monkeypatch.setitem(methods._REGISTRY, name, dataclasses.replace(method, streamed=counting))
    streamed_run = run(cfg, tmp_path / "streamed")
    assert len(calls) == streamed_run.tensors
    monkeypatch.setitem(methods._REGISTRY, name, dataclasses.replace(method, streamed=None))
    whole_run = run(cfg, tmp_path / "whole")
    assert streamed_run.weights_fingerprint == whole_run.weights_fingerprint


@pytest.mark.parametrize("name", STREAMED)
def test_engine_streams_and_matches_the_whole_tensor_merge_bitwise(
    name: str, models: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(name, models)
    assert_engine_streams_bitwise(name, cfg, tmp_path, monkeypatch)


def test_engine_streamed_tensor_allocates_nothing_the_size_of_the_tensor(
    models: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine path itself (finite checks, slices, output): one allocation as large as the embedding —
    the output — against many for the whole-tensor method."""
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 2048)
    plan = build_plan(_config("dare_ties", models, rescale_norm="l1"))
    try:
        task = max(plan.tensors, key=lambda t: t.bytes_out)
        size = task.bytes_out
        counts = []
        for streamed_fn in (plan.method.streamed, None):
            plan.method = dataclasses.replace(plan.method, streamed=streamed_fn)
            loaded = engine._load(plan, task)
            with allocations() as probe:
                engine.merge_tensor(plan, task, loaded)
            counts.append(sum(s >= size for s in probe.sizes))
            assert streamed_fn is None or max(s for s in probe.sizes if s < size) <= 8 * 65536
        assert counts[0] == 1 and counts[1] >= 4
    finally:
        plan.close()


@pytest.mark.parametrize("name", ["task_arithmetic", "dare_ties"])
def test_engine_writes_slices_without_ever_holding_the_whole_output(
    name: str, models: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the engine's sink, a sliced merge allocates nothing near the tensor's size, and the file holds
    the tensor the whole-output path returns."""
    from concurrent.futures import ThreadPoolExecutor

    from skillmerge.models.shards import PlannedShardWriter, TensorReader

    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 2048)
    monkeypatch.setattr(engine, "ELEMENTWISE_CHUNK_ELEMENTS", 2048)
    cfg = _plain(models) if name == "task_arithmetic" else _config(name, models, rescale_norm="l1")
    plan = build_plan(cfg)
    try:
        task = max(plan.tensors, key=lambda t: t.bytes_out)
        layout = [(task.name, task.out_dtype, task.shape)]
        with ThreadPoolExecutor(1) as pool, PlannedShardWriter(tmp_path / "out", layout) as writer:
            sink = engine.SliceSink(pool, writer)
            loaded = engine._load(plan, task)
            with allocations() as probe:
                assert engine.merge_tensor(plan, task, loaded, sink) is None
                sink.finish()
        # slices (some int64/float64), and DARE's kept keep-mask: one byte per entry, a quarter of the tensor
        assert probe.sizes and max(probe.sizes) <= task.bytes_out // 4
        whole = engine.merge_tensor(plan, task, engine._load(plan, task))
        assert whole is not None
        with TensorReader(tmp_path / "out") as reader:
            assert_bitwise(reader.get(task.name), whole)
    finally:
        plan.close()


def test_plan_estimates_slices_for_streamed_methods(models: list[Path]) -> None:
    estimates = {}
    for name in ("task_arithmetic", "ties", "dare_ties"):
        plan = build_plan(_config(name, models) if name != "task_arithmetic" else _plain(models))
        estimates[name] = plan.peak_bytes
        plan.close()
    assert estimates["ties"] == estimates["task_arithmetic"] == estimates["dare_ties"]


def _plain(paths: list[Path]) -> MergeConfig:
    base, *skills = paths
    return MergeConfig.model_validate(
        {"method": "task_arithmetic", "base_model": str(base), "models": [{"model": str(m)} for m in skills]}
    )


def test_norm_rescale_sums_in_float64_whatever_the_thread_count(all_threads: None) -> None:
    """The L1 norm of a norm rescale: a float32 reduction over millions of entries drifts by percents
    (and with the thread count); the float64 slice sums both paths use do not."""
    from skillmerge.merge.methods.sparsify import vector_norm

    values = torch.randn(3_000_000, generator=torch.Generator().manual_seed(4)) * 0.01
    exact = float(values.double().abs().sum())
    got = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        got.append(vector_norm(values, "l1"))
    assert got[0] == got[1] and abs(got[0] - exact) <= 1e-9 * exact


@pytest.mark.parametrize("name", ["ties", "dare_ties"])
def test_streamed_merge_is_the_same_on_one_thread_and_on_all(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamed methods run their slices' ops on every core: the bytes must not depend on how many. The
    embedding here is 4096 × 64 (slices above torch's parallel grain), the rescale an L1 norm sum."""
    from model_factory import tiny_llama

    shape = {"vocab_size": 4096, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1}
    paths = [save_model(tiny_llama(seed=seed, **shape), None, tmp_path / f"m{seed}") for seed in range(3)]
    cfg = _config(name, paths, rescale_norm="l1") if name == "dare_ties" else _config(name, paths)
    before = torch.get_num_threads()
    fingerprints = []
    try:
        for threads in (1, max(2, before)):
            torch.set_num_threads(threads)
            fingerprints.append(run(cfg, tmp_path / f"out-{threads}").weights_fingerprint)
    finally:
        torch.set_num_threads(before)
    assert fingerprints[0] == fingerprints[1]


# --- SCE: a variance top-k across models, then matrix-level weights -----------------------------------


@pytest.mark.parametrize("select_topk", [0.0, 0.3, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("levels", [None, 3], ids=["distinct", "many-ties"])
def test_streamed_sce_equals_whole_tensor_bitwise(select_topk: float, count: int, levels: int | None) -> None:
    """Equal variances (many-ties, and every variance of one model is 0) are kept by flat position across
    slices; the float64 square sums give the same fp32 weights whatever the slice size."""
    tensors = _inputs((37, 53), count, seed=count + (levels or 0), levels=levels)
    params = get_method("sce").params(select_topk=select_topk)
    model_params = [get_method("sce").model_params() for _ in range(count)]
    weights = [1.0] * count
    want = whole("sce", tensors, weights, params, model_params)
    for slice_elements in (64, 53 * 3, 10**6):
        assert_bitwise(streamed("sce", tensors, weights, params, model_params, slice_elements), want)


@pytest.mark.parametrize("shape", [(), (1,), (5,), (300,), (2, 1), (3, 1, 7)])
def test_streamed_sce_odd_shapes_equal_whole_tensor(shape: tuple[int, ...]) -> None:
    tensors = _inputs(shape, 2, seed=3, levels=2)
    params = get_method("sce").params(select_topk=0.5)
    model_params = [get_method("sce").model_params() for _ in range(2)]
    want = whole("sce", tensors, [1.0, 1.0], params, model_params)
    for slice_elements in (1, 4, 1000):
        assert_bitwise(streamed("sce", tensors, [1.0, 1.0], params, model_params, slice_elements), want)


def test_streamed_sce_temporaries_are_bounded_by_the_slice_not_the_tensor() -> None:
    tensors = _inputs((512, 1024), 3, seed=2)
    params = get_method("sce").params(select_topk=0.4)
    model_params = [get_method("sce").model_params() for _ in range(3)]
    slice_elements = 4096
    tensor_bytes = tensors[0].numel() * 4
    with allocations() as probe:
        got = streamed("sce", tensors, [1.0] * 3, params, model_params, slice_elements)
    parts = [s for s in probe.sizes if s < tensor_bytes]
    assert sorted(probe.sizes, reverse=True)[1] < tensor_bytes and len(parts) == len(probe.sizes) - 1
    # three stacked fp32 slices in float64 (the square sums), and the 512 KiB radix histogram
    assert max(parts) <= max(8 * 3 * slice_elements, 8 * 65536), max(parts)
    with allocations() as probe:
        want = whole("sce", tensors, [1.0] * 3, params, model_params)
    assert sum(size >= tensor_bytes for size in probe.sizes) >= 3
    assert_bitwise(got, want)


@pytest.mark.parametrize("select_topk", [0.5, 1.0])
def test_engine_streams_sce_and_matches_the_whole_tensor_merge_bitwise(
    select_topk: float, models: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, *skills = models
    cfg = MergeConfig.model_validate(
        {
            "method": "sce",
            "base_model": str(base),
            "models": [{"model": str(m)} for m in skills],
            "parameters": {"select_topk": select_topk},
        }
    )
    assert_engine_streams_bitwise("sce", cfg, tmp_path, monkeypatch)


@pytest.mark.parametrize("count", [2, 3, 5])
def test_sce_variance_is_torch_var_bit_for_bit(count: int) -> None:
    """The float64 two-pass variance rounds to what torch.var returns (which accumulates in double, ~30×
    slower on the CPU): SCE selects the same positions as mergekit's torch.var ranking."""
    from skillmerge.merge.methods.sce import variance

    gen = torch.Generator().manual_seed(count)
    deltas = torch.randn(count, 300_001, generator=gen) * torch.logspace(-6, 1, 300_001)
    assert_bitwise(variance(deltas), deltas.var(dim=0))
    assert_bitwise(variance(deltas.reshape(count, 1, -1)), deltas.var(dim=0).reshape(1, -1))
    assert_bitwise(variance(deltas[:1]), torch.zeros(300_001))


# --- SLERP, NuSLERP, Model Stock: coefficients from float64 dot products, then an elementwise mix ----------

GRAM_CASES = {
    "slerp-base": ("slerp", 1, {"t": 0.3}),
    "slerp-two": ("slerp", 2, {"t": 0.7}),
    "slerp-colinear": ("slerp", 1, {"t": 0.4}),
    "nuslerp": ("nuslerp", 2, {}),
    "nuslerp-rows": ("nuslerp", 2, {"nuslerp_flatten": False}),
    "nuslerp-columns": ("nuslerp", 2, {"nuslerp_flatten": False, "nuslerp_row_wise": True}),
    "model_stock": ("model_stock", 3, {}),
    "model_stock-filter_wise": ("model_stock", 2, {"filter_wise": True}),
    "multislerp": ("multislerp", 3, {}),
    "multislerp-nobase": ("multislerp", 3, {"normalize_weights": False}),
    "multislerp-one": ("multislerp", 1, {}),
    "karcher": ("karcher", 3, {}),
    "karcher-one-step": ("karcher", 2, {"max_iter": 1, "tol": 1e-9}),
}


def _gram_run(case: str, shape: tuple[int, ...], with_base: bool, slice_elements: int | None) -> torch.Tensor:
    """The case's merge whole (``slice_elements`` None) or streamed."""
    name, count, parameters = GRAM_CASES[case]
    tensors = _inputs(shape, count, seed=len(case), levels=None)
    if case == "slerp-colinear":  # the model is the base scaled: |cos Ω| = 1, lerp
        tensors = [tensors[0], tensors[0] * 1.5]
    method = get_method(name)
    params = method.params(**parameters)
    weights = [0.4, 1.3][:count] + [1.0] * max(0, count - 2)
    model_params = [method.model_params() for _ in range(count)]
    base, *models = tensors
    if slice_elements is None:
        deltas = [m - base for m in models] if with_base else None
        inputs = TensorInputs("t", base if with_base else None, models, deltas, weights, model_params)
        return method.fn(inputs, params, torch.Generator())
    slices = TensorSlices(
        "t",
        tuple(base.shape),
        base.reshape(-1) if with_base else None,
        [m.reshape(-1) for m in models],
        weights,
        model_params,
        slice_elements=slice_elements,
    )
    assert method.streamed is not None
    merge = method.streamed(slices, params, torch.Generator())
    parts = [merge.merge(start, stop) for start, stop in slices.ranges(merge.align)]
    if merge.into is not None:  # the in-place form writes the same bits
        for (start, stop), part in zip(slices.ranges(merge.align), parts, strict=True):
            written = torch.full((stop - start,), float("nan"))
            merge.into(start, stop, written)
            assert_bitwise(written, part)
    return torch.cat(parts).reshape(base.shape)


@pytest.mark.parametrize("case", sorted(GRAM_CASES))
@pytest.mark.parametrize("shape", [(37, 53), (300,), (3, 1, 7), ()])
def test_streamed_gram_methods_equal_whole_tensor_bitwise(case: str, shape: tuple[int, ...]) -> None:
    with_base = case not in ("slerp-two", "multislerp-nobase") and not (
        case.startswith("nuslerp") and shape == (300,)
    )
    want = _gram_run(case, shape, with_base, None)
    for slice_elements in (1, 64, 53 * 3, 10**6):
        assert_bitwise(_gram_run(case, shape, with_base, slice_elements), want)


def test_gram_sums_are_float64_and_the_same_on_any_thread_count(all_threads: None) -> None:
    from skillmerge.merge.methods.gram import gram

    gen = torch.Generator().manual_seed(9)
    a, b = torch.randn(2, 3_000_001, generator=gen) * 0.01
    got = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        products = gram([a, b])
        got.append((products.dot(0, 1), products.norm(0), products.norm(1), products.dot(1, 0)))
    assert got[0] == got[1]
    exact = float((a.double() * b.double()).sum())
    assert abs(got[0][0] - exact) <= 1e-12 * float(a.double().norm() * b.double().norm())
    assert got[0][0] == got[0][3] and abs(got[0][1] - float(a.double().norm())) <= 1e-12 * got[0][1]


@pytest.mark.parametrize("name", ["slerp", "nuslerp", "model_stock", "multislerp", "karcher"])
def test_engine_streams_gram_methods_and_matches_the_whole_tensor_merge_bitwise(
    name: str, models: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nuslerp and karcher here have no base: the engine streams methods that need none without one."""
    base, *skills = models
    entries = [{"model": str(m), "weight": w} for m, w in zip(skills, [0.3, 0.8], strict=True)]
    config: dict[str, Any] = {"method": name, "models": entries}
    if name == "slerp":
        config |= {"base_model": str(base), "models": entries[:1], "parameters": {"t": 0.35}}
    elif name == "model_stock":
        config["base_model"] = str(base)
    cfg = MergeConfig.model_validate(config)
    assert_engine_streams_bitwise(name, cfg, tmp_path, monkeypatch)


def _poisoned(src: Path, dst: Path, tensor: str, value: float) -> Path:
    """A copy of the model at ``src`` with one entry of ``tensor`` set to ``value`` (NaN or inf)."""
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    for file in src.iterdir():
        if file.suffix == ".safetensors":
            state = load_file(file)
            if tensor in state:
                state[tensor] = state[tensor].clone()
                state[tensor].view(-1)[5] = value
            save_file(state, dst / file.name, metadata={"format": "pt"})
        elif file.is_file():
            (dst / file.name).write_bytes(file.read_bytes())
    return dst


GRAM_CONFIGS = {
    # case: (method, indices of the models besides the base, parameters, per-model parameters); every case
    # has a base
    "slerp-base": ("slerp", [0], {"t": 0.35}, {}),
    "slerp-two-unused-base": ("slerp", [0, 1], {"t": 0.35}, {}),
    "nuslerp-base": ("nuslerp", [0, 1], {}, {}),
    "model_stock": ("model_stock", [0, 1], {}, {}),
    "multislerp-base": ("multislerp", [0, 1], {"normalize_weights": False}, {}),
    "karcher-unused-base": ("karcher", [0, 1], {}, {}),
    # the TIES/DARE family: top-k counts, or the norms of an L1/L2/L∞ rescale, see every τ_i entry
    "ties": ("ties", [0, 1], {}, {"density": 0.5}),
    "breadcrumbs_ties": ("breadcrumbs_ties", [0, 1], {}, {"density": 0.8, "gamma": 0.05}),
    "dare_ties-l1": ("dare_ties", [0, 1], {"rescale_norm": "l1"}, {"density": 0.6}),
    "della-linf": ("della", [0, 1], {"rescale_norm": "linf"}, {"density": 0.6, "epsilon": 0.1}),
    # ... but not DARE's ×1/density (phase 1 reads nothing) nor a model kept whole (density 1)
    "dare_linear-density": ("dare_linear", [0, 1], {}, {"density": 0.6}),
    "ties-one-model-whole": ("ties", [0, 1], {}, {"density": [0.5, 1.0]}),
}
SEPARATE_PASS = {
    "slerp-two-unused-base",
    "karcher-unused-base",
    "dare_linear-density",
    "ties-one-model-whole",
}


@pytest.mark.parametrize("poison", ["base", "last"])
@pytest.mark.parametrize("case", sorted(GRAM_CONFIGS))
def test_gram_methods_name_a_non_finite_input_without_a_separate_pass(
    case: str, poison: str, models: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slerp, NuSLERP, Model Stock and the TIES/DARE family check their inputs in phase 1 (their norms or
    top-k counts are finite exactly when the inputs are): clean inputs get no NaN/inf pass of their own,
    and a NaN/inf in any input — an unused base included — is still refused naming that file and tensor,
    with nothing written."""
    name, picks, parameters, per_model = GRAM_CONFIGS[case]
    base, *skills = models
    chosen = [skills[i] for i in picks]

    def config(base_path: Path, model_paths: list[Path]) -> MergeConfig:
        entries = [{"model": str(m), "weight": w} for m, w in zip(model_paths, [0.3, 0.8], strict=False)]
        for i, entry in enumerate(entries):
            if per_model:
                entry["parameters"] = {k: v[i] if isinstance(v, list) else v for k, v in per_model.items()}
        return MergeConfig.model_validate(
            {"method": name, "base_model": str(base_path), "models": entries, "parameters": parameters}
        )

    passes: list[str] = []
    original = engine._finite_in_slices

    def counting(flat: torch.Tensor, owner: Any, tensor: str, chunk: int) -> None:
        passes.append(tensor)
        original(flat, owner, tensor, chunk)

    monkeypatch.setattr(engine, "_finite_in_slices", counting)
    clean = run(config(base, chosen), tmp_path / "clean")
    assert clean.tensors > 0
    if case in SEPARATE_PASS:  # phase 1 does not read every input: every input gets the pass
        assert len(passes) == 3 * clean.tensors
    else:
        assert passes == []

    value = float("nan") if poison == "base" else float("inf")
    tensor = "model.layers.1.mlp.up_proj.weight"
    if poison == "base":
        bad = base = _poisoned(base, tmp_path / "bad", tensor, value)
    else:
        bad = chosen[-1] = _poisoned(chosen[-1], tmp_path / "bad", tensor, value)
    with pytest.raises(ModelError, match="non-finite") as caught:
        run(config(base, chosen), tmp_path / "out")
    assert str(bad) in str(caught.value) and tensor in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_the_merge_runs_with_the_older_heap_frozen(
    models: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cyclic collections during a merge skip what existed before it (torch's ~210k objects); afterwards
    the heap is as before."""
    import gc

    counts: list[int] = []
    original = engine.merge_tensor

    def recording(*args: Any, **kwargs: Any) -> Any:
        counts.append(gc.get_freeze_count())
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "merge_tensor", recording)
    gc.unfreeze()
    config = MergeConfig.model_validate(
        {"method": "linear", "models": [{"model": str(m)} for m in models[1:]]}
    )
    run(config, tmp_path / "out")
    assert counts and min(counts) > 10_000
    assert gc.get_freeze_count() == 0


def test_karcher_without_a_base_checks_its_models_in_phase_1(
    models: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Karcher's Gram pass reads every entry of every model: no separate NaN/inf pass, and a poisoned model
    is still refused naming its file and tensor."""
    skills = models[1:]
    passes: list[str] = []
    original = engine._finite_in_slices

    def counting(flat: torch.Tensor, owner: Any, tensor: str, chunk: int) -> None:
        passes.append(tensor)
        original(flat, owner, tensor, chunk)

    def config(paths: list[Path]) -> MergeConfig:
        return MergeConfig.model_validate({"method": "karcher", "models": [{"model": str(m)} for m in paths]})

    monkeypatch.setattr(engine, "_finite_in_slices", counting)
    assert run(config(skills), tmp_path / "clean").tensors > 0
    assert passes == []
    tensor = "model.layers.0.self_attn.k_proj.weight"
    bad = _poisoned(skills[0], tmp_path / "bad", tensor, float("nan"))
    with pytest.raises(ModelError, match="non-finite") as caught:
        run(config([bad, skills[1]]), tmp_path / "out")
    assert str(bad) in str(caught.value) and tensor in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "threads"),
    [("slerp", 1), ("model_stock", 1), ("nuslerp", 1), ("multislerp", 1), ("karcher", 1), ("ties", 2)],
)
def test_light_methods_compute_on_one_thread_and_ranking_methods_on_all(
    name: str, threads: int, models: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gram methods (``MergeMethod.light``) leave the other cores to reading and writing, as elementwise
    methods do; TIES ranks on every core; the caller's setting is back afterwards."""
    method = get_method(name)
    seen: list[int] = []

    def recording(slices: TensorSlices, params: Any, rng: torch.Generator) -> Any:
        seen.append(torch.get_num_threads())
        return method.streamed(slices, params, rng)

    monkeypatch.setitem(methods._REGISTRY, name, dataclasses.replace(method, streamed=recording))
    base, *skills = models
    entries = [{"model": str(m), "weight": w} for m, w in zip(skills, [0.3, 0.8], strict=True)]
    config: dict[str, Any] = {"method": name, "base_model": str(base), "models": entries}
    if name == "slerp":
        config |= {"models": entries[:1], "parameters": {"t": 0.35}}
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run(MergeConfig.model_validate(config), tmp_path / "out")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {threads}


def test_multislerp_norms_are_exact_where_float32_norms_drift() -> None:
    """On 8M-entry points torch's float32 norm is ~2.4e-4 low; multislerp's output norm is the formula's
    Σ w_i·‖x_i‖ in float64, to float32 rounding, and its direction the weighted mean of the unit vectors."""
    gen = torch.Generator().manual_seed(5)
    n = 1 << 23
    a, b = torch.randn(n, generator=gen) * 0.03, torch.randn(n, generator=gen) * 0.03 + 0.001
    assert abs(float(a.norm()) / float(a.double().norm()) - 1) > 1e-4  # the drift this guards against
    method = get_method("multislerp")
    inputs = TensorInputs("t", None, [a, b], None, [0.25, 0.75], [method.model_params()] * 2)
    merged = method.fn(inputs, method.params(), torch.Generator()).double()
    a64, b64 = a.double(), b.double()
    want_norm = 0.25 * float(a64.norm()) + 0.75 * float(b64.norm())
    assert abs(float(merged.norm()) / want_norm - 1) < 1e-6
    direction = 0.25 * a64 / a64.norm() + 0.75 * b64 / b64.norm()
    cosine = float(merged @ direction) / (float(merged.norm()) * float(direction.norm()))
    assert cosine > 1 - 1e-9
