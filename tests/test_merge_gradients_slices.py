"""Gradients over layers, filter precedence and slices: the rules, in our YAML and mergekit's (no mergekit).

The rules themselves were established by running mergekit 0.1.5 (tests/test_mergekit_parity.py checks them
against it); here they are pinned down as a spec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from model_factory import tiny_llama
from skillmerge.errors import UsageError
from skillmerge.merge import run
from skillmerge.merge.config import MergeConfig, config_from_dict
from skillmerge.merge.gradients import at_position, layer_position, split_layer_name
from skillmerge.merge.tensor_tasks import layer_positions, resolve_settings
from skillmerge.models.io import save_model
from skillmerge.models.shards import TensorReader


def test_gradient_is_piecewise_linear_over_evenly_spaced_knots() -> None:
    gradient = [0.3, 2.0, 0.5, 1.0]
    # 5 layers: t = 0, 0.25, 0.5, 0.75, 1 → knot positions 0, 0.75, 1.5, 2.25, 3
    got = [at_position(gradient, layer_position(j, 5)) for j in range(5)]
    assert got == pytest.approx([0.3, 1.575, 1.25, 0.625, 1.0])
    assert at_position([0.7], 0.4) == 0.7 and at_position(0.7, 0.4) == 0.7


def test_one_layer_run_takes_the_last_value_and_non_layer_tensors_the_first() -> None:
    assert layer_position(0, 1) == 1.0
    positions = layer_positions(
        ["model.embed_tokens.weight", "model.norm.weight", "model.layers.0.mlp.w", "model.layers.2.mlp.w"]
    )
    assert positions == {"model.layers.0.mlp.w": 0.0, "model.layers.2.mlp.w": 1.0}  # others: absent, t = 0


def test_layer_names_split_for_common_architectures() -> None:
    assert split_layer_name("model.layers.3.mlp.up_proj.weight") == ("model.layers", 3, "mlp.up_proj.weight")
    assert split_layer_name("transformer.h.11.attn.c_attn.weight") == (
        "transformer.h",
        11,
        "attn.c_attn.weight",
    )
    assert split_layer_name("model.embed_tokens.weight") is None


def settings(config: MergeConfig, name: str, t: float, slice_index: int | None = None) -> Any:
    overrides = list(config.overrides)
    if slice_index is not None:
        assert config.slices is not None
        overrides += config.slices[slice_index].overrides
    matched = tuple(j for j, o in enumerate(overrides) if o.matches(name))
    return resolve_settings(config, matched, t, slice_index)


FILTERS = {
    "merge_method": "ties",
    "base_model": "/b",
    "models": [
        {
            "model": "/m1",
            "parameters": {"weight": [{"filter": "q_proj", "value": [2.0, 0.5]}, {"value": 0.7}]},
        },
        {"model": "/m2", "parameters": {"weight": [{"filter": "o_proj", "value": [1.0, 0.0]}]}},
    ],
    "parameters": {
        "weight": [
            {"filter": "mlp", "value": [0.2, 1.0]},
            {"filter": "self_attn", "value": 0.3},
            {"value": 0.5},
        ],
        "lambda": [{"filter": "up_proj", "value": [1.0, 0.5]}, {"value": 1.1}],
    },
}


@pytest.mark.parametrize(
    ("name", "t", "weights", "lam"),
    [
        ("model.layers.0.self_attn.q_proj.weight", 0.5, (1.25, 0.3), 1.1),  # m1's filter (gradient at t)
        (
            "model.layers.0.self_attn.o_proj.weight",
            0.5,
            (0.7, 0.5),
            1.1,
        ),  # m1's fallback beats global filters
        (
            "model.layers.0.self_attn.k_proj.weight",
            1.0,
            (0.7, 0.3),
            1.1,
        ),  # m2: no match at its level → global
        ("model.layers.0.mlp.up_proj.weight", 0.5, (0.7, 0.6), 0.75),
        ("model.embed_tokens.weight", 0.0, (0.7, 0.5), 1.1),  # global fallback
    ],
)
def test_mergekit_filters_resolve_per_level_first_match(
    name: str, t: float, weights: Any, lam: float
) -> None:
    config = config_from_dict(FILTERS)
    got_weights, _, params = settings(config, name, t)
    assert got_weights == pytest.approx(weights)
    assert params.lambda_ == pytest.approx(lam)


def test_mergekit_gradients_become_our_lists() -> None:
    config = config_from_dict(
        {
            "merge_method": "ties",
            "base_model": "/b",
            "models": [{"model": "/m", "parameters": {"weight": [0, 0.5, 1], "density": [1, 0.7, 0.1]}}],
            "parameters": {"lambda": [1.0, 2.0]},
        }
    )
    assert config.models[0].weight == [0, 0.5, 1]
    weights, (own,), params = settings(config, "model.layers.1.mlp.w", 0.5)
    assert weights == (0.5,) and own.density == pytest.approx(0.7) and params.lambda_ == pytest.approx(1.5)


SLICED = {
    "merge_method": "task_arithmetic",
    "base_model": "/b",
    "slices": [
        {
            "sources": [
                {"model": "/b", "layer_range": [0, 3]},
                {"model": "/m1", "layer_range": [1, 4], "parameters": {"weight": [0.2, 1.0]}},
                {"model": "/m2", "layer_range": [2, 5]},
            ],
            "parameters": {"weight": [{"filter": "mlp", "value": 1.5}, {"value": 0.4}], "lambda": 0.8},
        }
    ],
    "parameters": {"weight": 0.6, "lambda": [{"filter": "o_proj", "value": 2.0}, {"value": 1.0}]},
}


def test_slice_levels_take_precedence_over_the_top_level() -> None:
    config = config_from_dict(SLICED)
    assert config.slices is not None and [m.model for m in config.models] == ["/m1", "/m2"]  # base left out
    assert config.slice_inputs(0) == [1, 2] and config.slice_base(0) is not None
    weights, _, params = settings(config, "model.layers.1.mlp.down_proj.weight", 0.5, 0)
    assert weights == pytest.approx((0.6, 1.5))  # source value; else the slice's filter
    assert params.lambda_ == 0.8  # the slice's fallback beats the top-level filter
    weights, _, _ = settings(config, "model.layers.1.self_attn.o_proj.weight", 0.5, 0)
    assert weights == pytest.approx((0.6, 0.4))


def test_our_yaml_expresses_slices_and_gradients(tmp_path: Path) -> None:
    config = MergeConfig.model_validate(
        {
            "method": "slerp",
            "slices": [
                {
                    "sources": [{"model": "a", "layer_range": [0, 2]}, {"model": "b", "layer_range": [0, 2]}],
                    "parameters": {"t": [0, 1]},
                    "overrides": [{"pattern": "mlp", "parameters": {"t": [1, 0]}}],
                }
            ],
        }
    )
    assert [m.model for m in config.models] == ["a", "b"]
    _, _, params = settings(config, "model.layers.0.mlp.up_proj.weight", 0.0, 0)
    assert params.t == 1


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(UsageError) as info:
        config_from_dict(data, "m.yaml")
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2
    return message


def sliced(sources: list[dict[str, Any]], method: str = "passthrough", **extra: Any) -> dict[str, Any]:
    return {"merge_method": method, "slices": [{"sources": sources}], **extra}


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        (sliced([{"model": "/a", "layer_range": [3, 1]}]), ["slices.0.sources.0.layer_range", "start < end"]),
        (sliced([{"model": "/a"}]), ["slices.0.sources.0.layer_range", "two integers"]),
        (
            sliced(
                [{"model": "/a", "layer_range": [0, 2]}, {"model": "/b", "layer_range": [0, 3]}], "linear"
            ),
            ["slices.0.sources.1.layer_range", "spans 3 layers"],
        ),
        (
            sliced([{"model": "/a", "layer_range": [0, 2]}], "task_arithmetic", base_model="/b"),
            ["slices.0.sources", "base_model", "not among"],
        ),
        (
            sliced([{"model": "/a", "layer_range": [0, 2]}, {"model": "/b", "layer_range": [0, 2]}]),
            ["slices.0.sources", "passthrough", "at most 1"],
        ),
        (
            {**sliced([{"model": "/a", "layer_range": [0, 2]}]), "models": [{"model": "/a"}]},
            ["models", "either models or slices"],
        ),
        (
            sliced([{"model": "/a", "layer_range": [0, 2], "colour": 1}]),
            ["slices.0.sources.0.colour", "unknown key"],
        ),
        (
            {
                "merge_method": "ties",
                "base_model": "/b",
                "models": [{"model": "/a"}],
                "parameters": {"density": [1, 1.5]},
            },
            ["parameters", "density"],
        ),
        (
            {"merge_method": "linear", "models": [{"model": "/a", "parameters": {"weight": [0.1, "x"]}}]},
            ["models.0.parameters.weight.1", "numbers only"],
        ),
    ],
)
def test_bad_gradients_and_slices_are_one_line_naming_the_field(
    data: dict[str, Any], fragments: list[str]
) -> None:
    message = refused(data)
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def three_layer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("slices-models")
    return {
        key: save_model(tiny_llama(tie=False, seed=seed, num_hidden_layers=3), None, root / key)
        for key, seed in (("a", 0), ("b", 1))
    }


def read(model_dir: Path) -> dict[str, torch.Tensor]:
    with TensorReader(model_dir) as reader:
        return {name: reader.get(name) for name in reader.names()}


def test_passthrough_stacking_renumbers_layers_and_sets_the_layer_count(
    tmp_path: Path, three_layer: dict[str, Path]
) -> None:
    config = MergeConfig.model_validate(
        {
            "method": "passthrough",
            "slices": [
                {"sources": [{"model": str(three_layer["a"]), "layer_range": [0, 2]}]},
                {"sources": [{"model": str(three_layer["b"]), "layer_range": [1, 3]}]},
            ],
        }
    )
    run(config, tmp_path / "out", progress=False)
    out, a, b = read(tmp_path / "out"), read(three_layer["a"]), read(three_layer["b"])
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_hidden_layers"] == 4
    name = "model.layers.{}.self_attn.q_proj.weight"
    for index, (source, layer) in enumerate([(a, 0), (a, 1), (b, 1), (b, 2)]):
        assert torch.equal(out[name.format(index)], source[name.format(layer)])
    assert torch.equal(out["model.embed_tokens.weight"], a["model.embed_tokens.weight"])
    assert torch.equal(out["lm_head.weight"], b["lm_head.weight"])
    assert not any(k.startswith("model.layers.4.") for k in out)


def test_weight_gradient_runs_over_the_layers(tmp_path: Path, three_layer: dict[str, Path]) -> None:
    config = MergeConfig.model_validate(
        {
            "method": "linear",
            "models": [
                {"model": str(three_layer["a"]), "weight": [0.0, 1.0]},
                {"model": str(three_layer["b"])},
            ],
        }
    )
    run(config, tmp_path / "out", progress=False)
    out, a, b = read(tmp_path / "out"), read(three_layer["a"]), read(three_layer["b"])
    for layer, w in ((0, 0.0), (1, 0.5), (2, 1.0)):
        name = f"model.layers.{layer}.mlp.up_proj.weight"
        assert torch.allclose(out[name], (w * a[name] + b[name]) / (w + 1.0), atol=1e-6)
    embed = "model.embed_tokens.weight"
    assert torch.allclose(out[embed], b[embed])  # t = 0 outside the layers: weight 0 for a


def test_layer_range_past_the_model_is_refused_and_nothing_written(
    tmp_path: Path, three_layer: dict[str, Path]
) -> None:
    config = MergeConfig.model_validate(
        {
            "method": "passthrough",
            "slices": [{"sources": [{"model": str(three_layer["a"]), "layer_range": [1, 5]}]}],
        }
    )
    with pytest.raises(
        UsageError, match=r"slices\.0\.sources\.0\.layer_range: \[1, 5\] goes past the 3 layers"
    ):
        run(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
