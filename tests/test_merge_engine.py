"""The streaming merge engine, end to end on small random Llama directories written to disk.

Every merge is compared to a reference computed in memory from the state dicts; bad inputs must fail with
one line, exit code 2 and nothing at the destination.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from skillmerge.errors import ModelError, OutputExistsError, UsageError
from skillmerge.merge import MergeConfig, engine, methods, run
from skillmerge.merge.command import merge_command
from skillmerge.merge.engine import tensor_seed
from skillmerge.merge.methods import get_method
from skillmerge.merge.methods.base import TensorInputs
from skillmerge.models import shards
from skillmerge.models.io import read_manifest, save_model, stored_state_dict
from skillmerge.models.shards import (
    INDEX_FILE,
    SINGLE_FILE,
    ShardedSafetensorsWriter,
    TensorReader,
)


def llama(vocab: int, *, seed: int, tied: bool = True, hidden: int = 32) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()


def perturbed(model: LlamaForCausalLM, seed: int, scale: float = 0.02) -> LlamaForCausalLM:
    """A copy of ``model`` with every parameter moved by N(0, scale²): a stand-in for a fine-tune."""
    copy = llama(
        model.config.vocab_size,
        seed=0,
        tied=model.config.tie_word_embeddings,
        hidden=model.config.hidden_size,
    )
    copy.load_state_dict(model.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in copy.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * scale)
    return copy


def save(
    model: LlamaForCausalLM,
    tok: PreTrainedTokenizerFast,
    path: Path,
    *,
    dtype: torch.dtype = torch.float32,
    shard: int = 2**30,
) -> Path:
    return save_model(model.to(dtype), tok, path, max_shard_bytes=shard)


def weights(path: Path) -> dict[str, torch.Tensor]:
    with TensorReader(path) as reader:
        return {name: reader.get(name) for name in reader.names()}


@pytest.fixture(scope="module")
def family(
    tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: PreTrainedTokenizerFast
) -> dict[str, Path]:
    """θ_base and three perturbed skill models, fp32 and bf16, sharded with different boundaries."""
    root = tmp_path_factory.mktemp("family")
    base = llama(len(tiny_tokenizer), seed=1)
    dirs = {}
    for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        dirs[f"base-{tag}"] = save(base, tiny_tokenizer, root / f"base-{tag}", dtype=dtype, shard=40_000)
        for k, shard in zip((1, 2, 3), (25_000, 70_000, 2**30), strict=True):
            model = perturbed(llama(len(tiny_tokenizer), seed=1), seed=10 + k)
            dirs[f"m{k}-{tag}"] = save(model, tiny_tokenizer, root / f"m{k}-{tag}", dtype=dtype, shard=shard)
    return dirs


def config(
    method: str, base: Path | None, models: list[Path], ws: list[float], **extra: object
) -> MergeConfig:
    entries = [{"model": str(m), "weight": w} for m, w in zip(models, ws, strict=True)]
    return MergeConfig.model_validate(
        {"method": method, "base_model": str(base) if base else None, "models": entries, **extra}
    )


def reference(method: str, cfg: MergeConfig, out_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The method applied to whole in-memory state dicts, tensor by tensor, with the engine's seed scheme."""
    base = weights(Path(cfg.base_model)) if cfg.base_model else None
    models = [weights(Path(e.model)) for e in cfg.models]
    fn = get_method(method)
    params = cfg.method_params()
    model_params = [cfg.model_params(i) for i in range(len(cfg.models))]
    names = base.keys() if base is not None else models[0].keys()
    out = {}
    for name in names:
        b = base[name].float() if base is not None else None
        ms = [m[name].float() for m in models]
        inputs = TensorInputs(
            name,
            b,
            ms,
            [m - b for m in ms] if b is not None else None,
            [e.weight for e in cfg.models],
            model_params,
        )
        gen = torch.Generator().manual_seed(tensor_seed(cfg.seed, name))
        dtype = out_dtype or (base or models[0])[name].dtype
        out[name] = fn.fn(inputs, params, gen).to(dtype)
    return out


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        torch.testing.assert_close(got[name].float(), want[name].float(), atol=atol, rtol=0, msg=name)


@pytest.mark.parametrize("tag", ["fp32", "bf16"])
@pytest.mark.parametrize("count", [2, 3])
def test_task_arithmetic_matches_formula(
    family: dict[str, Path], tmp_path: Path, tag: str, count: int
) -> None:
    models = [family[f"m{k}-{tag}"] for k in (1, 2, 3)][:count]
    ws = [1.0, 0.5, -0.25][:count]
    cfg = config("task_arithmetic", family[f"base-{tag}"], models, ws)
    run(cfg, tmp_path / "out")
    base = weights(family[f"base-{tag}"])
    thetas = [weights(m) for m in models]
    want = {}
    for name, b in base.items():  # θ_base + Σ w_i (θ_i − θ_base), in fp32, cast to the base's dtype
        acc = torch.zeros_like(b, dtype=torch.float32)
        for theta, w in zip(thetas, ws, strict=True):
            acc += w * (theta[name].float() - b.float())
        want[name] = (b.float() + acc).to(b.dtype)
    got = weights(tmp_path / "out")
    assert_same(got, want, atol=1e-6 if tag == "fp32" else 1e-2)
    if tag == "bf16":  # bit-exact: the same fp32 operations in the same order, then one rounding
        assert all(torch.equal(got[n], want[n]) for n in want)


def test_linear_without_base_matches_formula(family: dict[str, Path], tmp_path: Path) -> None:
    models = [family["m1-fp32"], family["m2-fp32"], family["m3-fp32"]]
    cfg = config("linear", None, models, [2.0, 1.0, 1.0])
    run(cfg, tmp_path / "out")
    thetas = [weights(m) for m in models]
    want = {n: (2 * thetas[0][n] + thetas[1][n] + thetas[2][n]) / 4 for n in thetas[0]}
    assert_same(weights(tmp_path / "out"), want)


@pytest.mark.parametrize(
    ("method", "extra", "count"),
    [
        ("ties", {"parameters": {"density": 0.5}}, 3),
        ("dare_ties", {"parameters": {"density": 0.6}, "seed": 7}, 3),
        ("dare_linear", {"parameters": {"density": 0.3}}, 2),
        ("breadcrumbs", {"parameters": {"density": 0.8, "gamma": 0.05}}, 2),
        ("wise_ft", {}, 1),
        ("slerp", {"parameters": {"t": 0.3}}, 2),
    ],
)
def test_methods_match_in_memory_reference(
    family: dict[str, Path], tmp_path: Path, method: str, extra: dict, count: int
) -> None:
    models = [family["m1-fp32"], family["m2-fp32"], family["m3-fp32"]][:count]
    base = None if method == "slerp" else family["base-fp32"]
    cfg = config(method, base, models, [0.7, 0.4, 0.3][:count], **extra)
    run(cfg, tmp_path / "out")
    assert_same(weights(tmp_path / "out"), reference(method, cfg), atol=1e-6)


def test_sharded_inputs_with_different_boundaries_give_sharded_output_that_loads(
    family: dict[str, Path], tmp_path: Path
) -> None:
    shard_counts = [len(TensorReader(family[f"m{k}-fp32"]).files()) for k in (1, 2, 3)]
    assert len(set(shard_counts)) == 3  # the inputs really are cut differently
    cfg = config(
        "task_arithmetic",
        family["base-fp32"],
        [family["m1-fp32"], family["m2-fp32"]],
        [0.5, 0.5],
        max_shard_size=30_000,
    )
    result = run(cfg, tmp_path / "out")
    out = tmp_path / "out"
    assert (out / INDEX_FILE).is_file() and not (out / SINGLE_FILE).exists()
    index = json.loads((out / INDEX_FILE).read_text())
    assert len(set(index["weight_map"].values())) >= 3
    assert_same(weights(out), reference("task_arithmetic", cfg))
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    loaded = stored_state_dict(model)
    for name, tensor in weights(out).items():
        assert torch.equal(loaded[name], tensor), name
    assert "lm_head.weight" not in weights(out)  # tied: stored once, as transformers does
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    manifest = read_manifest(out)
    assert manifest["weights_fingerprint"] == result.weights_fingerprint
    assert manifest["bytes_written"] == sum(t.numel() * 4 for t in weights(out).values())
    assert manifest["bytes_read"] == result.bytes_read > manifest["bytes_written"]
    assert manifest["seed"] == 0 and manifest["peak_rss_bytes"] > 0 and manifest["wall_seconds"] >= 0
    assert {i["role"] for i in manifest["inputs"]} == {"base", "models.0", "models.1"}
    assert all(len(i["header_fingerprint"]) == 64 for i in manifest["inputs"])
    assert "task_arithmetic" in (out / "README.md").read_text()
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()


def test_ptm_equals_general_plus_omega_times_skill_vector(family: dict[str, Path], tmp_path: Path) -> None:
    omega = 0.35
    cfg = config("task_arithmetic", family["base-fp32"], [family["m1-fp32"], family["m2-fp32"]], [1.0, omega])
    run(cfg, tmp_path / "out")
    base, general, skill = (weights(family[k]) for k in ("base-fp32", "m1-fp32", "m2-fp32"))
    want = {n: general[n] + omega * (skill[n] - base[n]) for n in base}
    assert_same(weights(tmp_path / "out"), want, atol=1e-6)


def test_overrides_apply_per_pattern_and_model(family: dict[str, Path], tmp_path: Path) -> None:
    cfg = MergeConfig.model_validate(
        {
            "method": "task_arithmetic",
            "base_model": str(family["base-fp32"]),
            "models": [
                {"model": str(family["m1-fp32"]), "weight": 1.0},
                {"model": str(family["m2-fp32"]), "weight": 0.5, "name": "skill"},
            ],
            "overrides": [
                {"pattern": r"embed_tokens", "models": ["skill"], "weight": 0.0},
                {"pattern": r"self_attn", "weight": 0.1},
                {"pattern": r"layers\.1\.self_attn", "models": ["skill"], "weight": 2.0},
            ],
        }
    )
    run(cfg, tmp_path / "out")
    base, m1, m2 = (weights(family[k]) for k in ("base-fp32", "m1-fp32", "m2-fp32"))
    got = weights(tmp_path / "out")

    def expect(name: str, w1: float, w2: float) -> torch.Tensor:
        return base[name] + w1 * (m1[name] - base[name]) + w2 * (m2[name] - base[name])

    checks = {
        "model.embed_tokens.weight": (1.0, 0.0),
        "model.layers.0.self_attn.q_proj.weight": (0.1, 0.1),
        "model.layers.1.self_attn.q_proj.weight": (0.1, 2.0),
        "model.layers.0.mlp.up_proj.weight": (1.0, 0.5),
    }
    for name, (w1, w2) in checks.items():
        torch.testing.assert_close(got[name], expect(name, w1, w2), atol=1e-6, rtol=0, msg=name)


def test_dare_is_deterministic_across_thread_counts_and_io_threads(
    family: dict[str, Path], tmp_path: Path
) -> None:
    models = [family["m1-fp32"], family["m2-fp32"], family["m3-fp32"]]
    fingerprints = []
    before = torch.get_num_threads()
    try:
        for threads, io_threads in ((1, 1), (2, 4)):
            torch.set_num_threads(threads)
            cfg = config(
                "dare_ties",
                family["base-fp32"],
                models,
                [0.5, 0.5, 0.5],
                seed=3,
                io_threads=io_threads,
                parameters={"density": 0.4},
            )
            fingerprints.append(run(cfg, tmp_path / f"out-{threads}").weights_fingerprint)
    finally:
        torch.set_num_threads(before)
    assert fingerprints[0] == fingerprints[1]
    other = config(
        "dare_ties", family["base-fp32"], models, [0.5, 0.5, 0.5], seed=4, parameters={"density": 0.4}
    )
    assert run(other, tmp_path / "seed-4").weights_fingerprint != fingerprints[0]


def test_output_dtype_can_differ_from_inputs(family: dict[str, Path], tmp_path: Path) -> None:
    cfg = config("task_arithmetic", family["base-fp32"], [family["m1-fp32"]], [0.5], dtype="bfloat16")
    run(cfg, tmp_path / "out")
    got = weights(tmp_path / "out")
    assert {t.dtype for t in got.values()} == {torch.bfloat16}
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "bfloat16"
    assert_same(got, reference("task_arithmetic", cfg, torch.bfloat16), atol=0)


def test_dry_run_writes_nothing_and_reports_the_plan(family: dict[str, Path], tmp_path: Path) -> None:
    cfg = config(
        "ties",
        family["base-fp32"],
        [family["m1-fp32"], family["m2-fp32"]],
        [1, 1],
        parameters={"density": 0.5},
    )
    result = run(cfg, tmp_path / "out", dry_run=True)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    n = len(weights(family["base-fp32"]))
    assert result.dry_run and result.tensors == n
    assert result.bytes_written == sum(t.numel() * 4 for t in weights(family["base-fp32"]).values())
    assert result.bytes_read == 3 * result.bytes_written
    assert result.plan["estimated_peak_bytes"] > 0
    assert f"tensors: {n}" in result.description


def test_tied_skill_model_head_reads_its_embedding(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    base = llama(len(tiny_tokenizer), seed=1, tied=False)
    base_dir = save(base, tiny_tokenizer, tmp_path / "base")
    tied = perturbed(llama(len(tiny_tokenizer), seed=1, tied=True), seed=5)
    tied_dir = save(tied, tiny_tokenizer, tmp_path / "tied")
    assert "lm_head.weight" in weights(base_dir) and "lm_head.weight" not in weights(tied_dir)
    cfg = config("task_arithmetic", base_dir, [tied_dir], [0.5])
    run(cfg, tmp_path / "out")
    b, t = weights(base_dir), weights(tied_dir)
    want = b["lm_head.weight"] + 0.5 * (t["model.embed_tokens.weight"] - b["lm_head.weight"])
    torch.testing.assert_close(weights(tmp_path / "out")["lm_head.weight"], want, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- bad input: one line, nothing written


def _expect_refusal(cfg: MergeConfig, out: Path, *fragments: str, error: type = UsageError) -> None:
    with pytest.raises(error) as info:
        run(cfg, out)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no temp leftovers


def _edit_tensor(
    src: Path, dst: Path, tok: PreTrainedTokenizerFast, edit: Callable[[dict[str, torch.Tensor]], object]
) -> Path:
    model = AutoModelForCausalLM.from_pretrained(src, local_files_only=True)
    state = dict(stored_state_dict(model))
    edit(state)
    dst.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (src / name).exists():
            (dst / name).write_bytes((src / name).read_bytes())
    with ShardedSafetensorsWriter(dst) as writer:
        for name, tensor in state.items():
            writer.add(name, tensor)
    return dst


def test_mismatched_shapes_are_refused(
    family: dict[str, Path], tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    def widen(state: dict[str, torch.Tensor]) -> None:
        state["model.layers.0.mlp.up_proj.weight"] = torch.zeros(65, 32)

    bad = _edit_tensor(family["m1-fp32"], tmp_path / "bad", tiny_tokenizer, widen)
    cfg = config("task_arithmetic", family["base-fp32"], [bad], [1.0])
    _expect_refusal(
        cfg, tmp_path / "out", "model.layers.0.mlp.up_proj.weight", "[65, 32]", str(bad), error=ModelError
    )


def test_missing_tensor_is_refused(
    family: dict[str, Path], tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    bad = _edit_tensor(
        family["m1-fp32"],
        tmp_path / "bad",
        tiny_tokenizer,
        lambda s: s.pop("model.layers.1.post_attention_layernorm.weight"),
    )
    cfg = config("task_arithmetic", family["base-fp32"], [bad], [1.0])
    _expect_refusal(
        cfg,
        tmp_path / "out",
        "missing tensor model.layers.1.post_attention_layernorm.weight",
        error=ModelError,
    )


def test_nan_in_an_input_is_named(
    family: dict[str, Path], tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    def poison(state: dict[str, torch.Tensor]) -> None:
        state["model.norm.weight"] = state["model.norm.weight"].clone()
        state["model.norm.weight"][3] = float("nan")

    bad = _edit_tensor(family["m2-fp32"], tmp_path / "bad", tiny_tokenizer, poison)
    cfg = config("task_arithmetic", family["base-fp32"], [family["m1-fp32"], bad], [1.0, 1.0])
    _expect_refusal(cfg, tmp_path / "out", "model.norm.weight", "non-finite", str(bad), error=ModelError)


def test_different_architectures_are_refused(
    family: dict[str, Path], tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    bad = _edit_tensor(family["m1-fp32"], tmp_path / "bad", tiny_tokenizer, lambda s: None)
    cfg_json = json.loads((bad / "config.json").read_text())
    cfg_json.update(model_type="mistral", architectures=["MistralForCausalLM"])
    (bad / "config.json").write_text(json.dumps(cfg_json))
    cfg = config("task_arithmetic", family["base-fp32"], [bad], [1.0])
    _expect_refusal(cfg, tmp_path / "out", "different architecture", "mistral", error=ModelError)


def test_truncated_safetensors_file_is_refused(
    family: dict[str, Path], tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    bad = _edit_tensor(family["m1-fp32"], tmp_path / "bad", tiny_tokenizer, lambda s: None)
    weights_file = bad / SINGLE_FILE
    weights_file.write_bytes(weights_file.read_bytes()[:-1000])
    cfg = config("task_arithmetic", family["base-fp32"], [bad], [1.0])
    _expect_refusal(cfg, tmp_path / "out", str(weights_file), "truncated", error=ModelError)


def test_added_tokens_are_refused_naming_them(
    family: dict[str, Path], tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    model = AutoModelForCausalLM.from_pretrained(family["m1-fp32"], local_files_only=True)
    tok = PreTrainedTokenizerFast.from_pretrained(family["m1-fp32"])
    tok.add_tokens(["<tool_call>", "</tool_call>"])
    model.resize_token_embeddings(len(tok))
    bad = save_model(model, tok, tmp_path / "bad")
    cfg = config("task_arithmetic", family["base-fp32"], [bad], [1.0])
    _expect_refusal(
        cfg,
        tmp_path / "out",
        "vocabulary differs",
        "adds 2 token(s) '<tool_call>', '</tool_call>'",
        error=ModelError,
    )


def test_tokenizers_are_parsed_only_where_their_files_differ(
    family: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte-identical tokenizer.json files (a fine-tune of its base) need no parse; a differing, unreadable
    one is still refused naming the file."""
    from skillmerge.merge import plan as plan_module

    parsed: list[Path] = []
    vocab = plan_module._vocab
    monkeypatch.setattr(plan_module, "_vocab", lambda model: parsed.append(model.path) or vocab(model))
    run(config("task_arithmetic", family["base-fp32"], [family["m1-fp32"]], [1.0]), tmp_path / "same")
    assert parsed == []
    bad = tmp_path / "bad"
    shutil.copytree(family["m1-fp32"], bad)
    (bad / "tokenizer.json").write_text("{not json")
    cfg = config("task_arithmetic", family["base-fp32"], [bad], [1.0])
    _expect_refusal(
        cfg, tmp_path / "out", str(bad / "tokenizer.json"), "cannot read tokenizer", error=ModelError
    )
    assert parsed[0] == family["base-fp32"]


def test_existing_output_is_refused_before_any_work(family: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cfg = config("task_arithmetic", family["base-fp32"], [family["m1-fp32"]], [1.0])
    with pytest.raises(OutputExistsError, match="output exists"):
        run(cfg, out)
    assert (out / "keep.txt").read_text() == "mine"
    run(cfg, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / SINGLE_FILE).is_file()


def test_full_disk_mid_merge_leaves_nothing(
    family: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk fills on the 5th data write, whether a tensor is written whole or slice by slice.
    calls = {"n": 0}
    real_pwrite = shards._pwrite_all

    def pwrite_then_fill_disk(fd: int, data: memoryview, offset: int) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_pwrite(fd, data, offset)

    monkeypatch.setattr(shards, "_pwrite_all", pwrite_then_fill_disk)
    cfg = config("task_arithmetic", family["base-fp32"], [family["m1-fp32"]], [1.0])
    _expect_refusal(cfg, tmp_path / "out", "no space left", error=ModelError)
    assert calls["n"] >= 5  # slices queued before the failure may still be written, then removed


def test_merge_command_prints_plan_on_dry_run(
    family: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_path = tmp_path / "merge.yaml"
    cfg_path.write_text(
        f"method: task_arithmetic\nbase_model: {family['base-fp32']}\nmodels:\n"
        f"  - model: {family['m1-fp32']}\n    weight: 0.5\n"
    )
    merge_command(cfg_path, tmp_path / "out", dry_run=True, overwrite=False)
    out = capsys.readouterr().out
    assert "merge: task_arithmetic, 1 models" in out and "dry run: nothing written" in out
    assert not (tmp_path / "out").exists()
    merge_command(cfg_path, tmp_path / "out", dry_run=False, overwrite=False)
    assert "wrote" in capsys.readouterr().out
    with safe_open(str(tmp_path / "out" / SINGLE_FILE), "pt") as handle:
        assert "model.norm.weight" in set(handle.keys())


@pytest.mark.parametrize(
    ("method", "tag", "count", "extra"),
    [
        ("task_arithmetic", "bf16", 3, {"dtype": "float32"}),
        (
            "task_arithmetic",
            "fp32",
            2,
            {"parameters": {"normalize": True, "lambda": 0.7}, "dtype": "bfloat16"},
        ),
        ("linear", "fp32", 3, {}),
        ("linear", "bf16", 2, {"base": False}),
        ("wise_ft", "fp32", 1, {"parameters": {"omega": 0.3}}),
    ],
)
def test_elementwise_methods_in_slices_equal_whole_tensor_bitwise(
    family: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    tag: str,
    count: int,
    extra: dict,
) -> None:
    use_base = extra.pop("base", True)
    models = [family[f"m{k}-{tag}"] for k in (1, 2, 3)][:count]
    cfg = config(
        method, family[f"base-{tag}"] if use_base else None, models, [0.7, -0.4, 0.3][:count], **extra
    )
    assert get_method(method).elementwise
    monkeypatch.setattr(engine, "ELEMENTWISE_CHUNK_ELEMENTS", 7)  # odd: every tensor ends on a partial slice
    slices: list[int] = []
    done = engine._SliceOutput.done
    monkeypatch.setattr(
        engine._SliceOutput, "done", lambda self, target: slices.append(target.numel()) or done(self, target)
    )
    sliced = run(cfg, tmp_path / "sliced")
    assert slices and max(slices) == 7 and len(slices) > 2 * len(weights(tmp_path / "sliced"))
    monkeypatch.setattr(engine._SliceOutput, "done", done)
    whole_method = dataclasses.replace(get_method(method), elementwise=False)
    monkeypatch.setitem(methods._REGISTRY, method, whole_method)
    whole = run(cfg, tmp_path / "whole")
    assert sliced.weights_fingerprint == whole.weights_fingerprint
    got, want = weights(tmp_path / "sliced"), weights(tmp_path / "whole")
    assert sorted(got) == sorted(want)
    assert all(torch.equal(got[n], want[n]) and got[n].dtype == want[n].dtype for n in want)


def test_non_elementwise_methods_stay_whole() -> None:
    for name in ("ties", "dare_linear", "dare_ties", "breadcrumbs", "breadcrumbs_ties", "slerp"):
        assert not get_method(name).elementwise, name


def test_nan_in_the_base_is_named_before_a_model(
    family: dict[str, Path], tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    def poison(state: dict[str, torch.Tensor]) -> None:
        state["model.embed_tokens.weight"] = state["model.embed_tokens.weight"].clone()
        state["model.embed_tokens.weight"][-1, -2:] = float("inf")

    bad_base = _edit_tensor(family["base-fp32"], tmp_path / "bad-base", tiny_tokenizer, poison)
    bad_model = _edit_tensor(family["m1-fp32"], tmp_path / "bad-model", tiny_tokenizer, poison)
    cfg = config("task_arithmetic", bad_base, [bad_model], [1.0])
    _expect_refusal(
        cfg, tmp_path / "out", str(bad_base), "model.embed_tokens.weight has 2 non-finite", error=ModelError
    )
