"""compute_dtype: fp32 arithmetic by default; ``dtype`` (or a half dtype) computes as mergekit does.

What mergekit itself produces is checked in tests/test_mergekit_parity.py; these tests pin our half-precision
arithmetic to the operation order measured there, without mergekit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from model_factory import tiny_llama
from skillmerge.errors import UsageError
from skillmerge.merge import MergeConfig, run
from skillmerge.merge.command import merge_command
from skillmerge.merge.config import config_from_dict
from skillmerge.merge.methods.slerp import slerp_tensors
from skillmerge.merge.methods.sparsify import disjoint_sum, top_k_mask
from skillmerge.merge.methods.task_arithmetic import combine_task_vectors
from skillmerge.models.io import save_model
from skillmerge.models.shards import TensorReader

Tensors = dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """θ_base and two perturbed copies, stored in fp32 (so rounding the inputs to bf16 matters)."""
    root = tmp_path_factory.mktemp("precision")
    base = tiny_llama(tie=False, seed=0)
    paths = {"base": save_model(base, None, root / "base")}
    gen = torch.Generator().manual_seed(3)
    for k in (1, 2):
        model = tiny_llama(tie=False, seed=0)
        model.load_state_dict(
            {n: v + 0.02 * torch.randn(v.shape, generator=gen) for n, v in base.state_dict().items()}
        )
        paths[f"m{k}"] = save_model(model, None, root / f"m{k}")
    return paths


def read(model_dir: Path) -> Tensors:
    with TensorReader(model_dir) as reader:
        return {name: reader.get(name) for name in reader.names()}


def config(models: dict[str, Path], **extra: object) -> MergeConfig:
    return MergeConfig.model_validate(
        {
            "method": "task_arithmetic",
            "base_model": str(models["base"]),
            "models": [
                {"model": str(models["m1"]), "weight": 0.5},
                {"model": str(models["m2"]), "weight": 0.3},
            ],
            "parameters": {"lambda": 0.9},
            "dtype": "bfloat16",
            **extra,
        }
    )


def test_compute_dtype_defaults_to_float32_and_refuses_unknown_values() -> None:
    data = {"method": "linear", "models": [{"model": "a"}]}
    assert config_from_dict(data).compute_dtype == "float32"
    assert config_from_dict({**data, "compute_dtype": "dtype"}).compute_dtype == "dtype"
    with pytest.raises(UsageError, match="compute_dtype"):
        config_from_dict({**data, "compute_dtype": "float64"})
    with pytest.raises(UsageError, match="compute_dtype: 'int8'"):
        config_from_dict(data).with_compute_dtype("int8")


def test_default_rounds_once_from_fp32(tmp_path: Path, models: dict[str, Path]) -> None:
    out = read(run(config(models), tmp_path / "out", progress=False).out_dir)
    base, m1, m2 = (read(models[k]) for k in ("base", "m1", "m2"))
    for name, merged in out.items():
        b = base[name]
        expected = b + 0.9 * (0.5 * (m1[name] - b) + 0.3 * (m2[name] - b))
        assert merged.dtype == torch.bfloat16
        assert torch.equal(merged, expected.to(torch.bfloat16)), name


def test_dtype_compute_follows_mergekit_order_in_bf16(tmp_path: Path, models: dict[str, Path]) -> None:
    """Inputs rounded to bf16, τ in bf16, weights rounded to bf16, one reduction over the stacked models."""
    result = run(config(models, compute_dtype="dtype"), tmp_path / "out", progress=False)
    out = read(result.out_dir)
    base, m1, m2 = (read(models[k]) for k in ("base", "m1", "m2"))
    differs = 0
    for name, merged in out.items():
        b, t1, t2 = (x[name].to(torch.bfloat16) for x in (base, m1, m2))
        weights = torch.tensor([0.5, 0.3], dtype=torch.bfloat16).view(-1, *[1] * b.dim())
        expected = b + (torch.stack([t1 - b, t2 - b]) * weights).sum(dim=0) * 0.9
        assert torch.equal(merged, expected), name
        fp32 = b.float() + 0.9 * (0.5 * (t1.float() - b.float()) + 0.3 * (t2.float() - b.float()))
        differs += int((merged != fp32.to(torch.bfloat16)).sum())
    assert differs > 0  # the option changes the bits
    assert result.manifest["config"]["compute_dtype"] == "dtype"


def test_cli_compute_dtype_flag(tmp_path: Path, models: dict[str, Path]) -> None:
    yaml = tmp_path / "merge.yaml"
    yaml.write_text(
        f"merge_method: task_arithmetic\nbase_model: {models['base']}\nmodels:\n"
        f"  - model: {models['m1']}\n    parameters: {{weight: 0.5}}\n"
        f"  - model: {models['m2']}\n    parameters: {{weight: 0.3}}\n"
        "parameters: {lambda: 0.9}\ndtype: bfloat16\n"
    )
    app = typer.Typer()
    app.command()(merge_command)
    outcome = CliRunner().invoke(app, [str(yaml), "--out", str(tmp_path / "cli"), "--compute-dtype", "dtype"])
    assert outcome.exit_code == 0, outcome.output
    api = read(run(config(models, compute_dtype="dtype"), tmp_path / "api", progress=False).out_dir)
    cli = read(tmp_path / "cli")
    assert all(torch.equal(cli[name], api[name]) for name in api)
    bad = CliRunner().invoke(app, [str(yaml), "--out", str(tmp_path / "bad"), "--compute-dtype", "fp8"])
    assert bad.exit_code != 0 and not (tmp_path / "bad").exists()


def test_half_top_k_keeps_exactly_k_in_descending_sort_order() -> None:
    scores = torch.tensor([0.5, 0.25, 0.5, 0.5, 0.125, 0.5], dtype=torch.bfloat16)
    mask = top_k_mask(scores, 3)
    assert int(mask.sum()) == 3 and not mask[1] and not mask[4]
    order = torch.sort(scores, descending=True).indices[:3]
    assert torch.equal(mask.nonzero().reshape(-1).sort().values, order.sort().values)
    assert torch.equal(top_k_mask(scores.float(), 3), torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool))


def test_half_disjoint_sum_is_one_reduction_over_stacked_models() -> None:
    gen = torch.Generator().manual_seed(0)
    deltas = [torch.randn(257, generator=gen).to(torch.float16) for _ in range(3)]
    weights = [0.6, 0.3, 0.7]
    mixed, divisor = disjoint_sum(deltas, weights)
    scale = torch.tensor(weights, dtype=torch.float16).view(-1, 1)
    weighted = torch.stack(deltas) * scale
    elected = torch.where(weighted.sum(0) >= 0, 1.0, -1.0).to(torch.float16)
    agree = torch.sign(weighted) == elected
    assert mixed.dtype == divisor.dtype == torch.float16
    assert torch.equal(mixed, (weighted * agree).sum(0))
    assert torch.equal(divisor, (scale * agree).sum(0))


def test_half_task_arithmetic_normalize_divides_by_rounded_weight_sum() -> None:
    base = torch.zeros(4, dtype=torch.bfloat16)
    deltas = [torch.ones(4, dtype=torch.bfloat16), 2 * torch.ones(4, dtype=torch.bfloat16)]
    out = combine_task_vectors(base, deltas, [0.3, 0.7], consensus=False, normalize=True, lambda_=1.0)
    scale = torch.tensor([0.3, 0.7], dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, (scale[0] * deltas[0] + scale[1] * deltas[1]) / scale.sum())


def test_half_slerp_mixes_in_fp32_and_rounds_once() -> None:
    gen = torch.Generator().manual_seed(1)
    a, b = (torch.randn(64, generator=gen).to(torch.bfloat16) for _ in range(2))
    out = slerp_tensors(0.3, a, b)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, slerp_tensors(0.3, a.float(), b.float()).to(torch.bfloat16))
