"""Merge configs: our YAML and mergekit's parse to the same thing; every bad field is one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from skillmerge.errors import UsageError
from skillmerge.merge.config import MergeConfig, config_from_dict, load_merge_config, parse_size


def write(tmp_path: Path, text: str, name: str = "merge.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        load_merge_config(path)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2
    assert message.startswith(f"{path}")
    return message


OURS = """
method: ties
base_model: base
models:
  - model: general
    weight: 1.0
    parameters: {density: 0.7}
  - model: skills/safety
    weight: 0.5
parameters: {density: 0.5, normalize: true, lambda: 1.0}
dtype: bfloat16
"""

MERGEKIT = """
merge_method: ties
base_model: base
models:
  - model: base
  - model: general
    parameters: {weight: 1.0, density: 0.7}
  - model: skills/safety
    parameters: {weight: 0.5}
parameters: {density: 0.5, normalize: true, int8_mask: true}
dtype: bfloat16
"""


def test_relative_paths_are_resolved_against_the_config_file(tmp_path: Path) -> None:
    config = load_merge_config(write(tmp_path, OURS))
    assert config.base_model == str(tmp_path / "base")
    assert [m.model for m in config.models] == [str(tmp_path / "general"), str(tmp_path / "skills/safety")]
    assert config.model_params(0).density == 0.7  # its own value wins over the top-level default
    assert config.model_params(1).density == 0.5
    assert config.method_params().normalize is True


def test_mergekit_yaml_parses_to_the_same_config_as_ours(tmp_path: Path) -> None:
    ours = load_merge_config(write(tmp_path, OURS, "ours.yaml"))
    theirs = load_merge_config(write(tmp_path, MERGEKIT, "mergekit.yaml"))
    assert theirs.models == ours.models  # the base's own entry is dropped, as mergekit does
    assert theirs.base_model == ours.base_model and theirs.dtype == ours.dtype == "bfloat16"
    assert theirs.method_params() == ours.method_params()
    assert [theirs.model_params(i) for i in range(2)] == [ours.model_params(i) for i in range(2)]


def test_mergekit_defaults_are_filled_in() -> None:
    config = config_from_dict(
        {"merge_method": "task_arithmetic", "base_model": "/b", "models": [{"model": "/m"}]}, "x.yaml"
    )
    assert config.method == "task_arithmetic" and config.models[0].weight == 1.0
    assert config.method_params().normalize is False
    linear = config_from_dict({"merge_method": "linear", "models": [{"model": "/a"}, {"model": "/b"}]})
    assert linear.method_params().normalize is True


def test_mergekit_slerp_puts_base_model_first() -> None:
    config = config_from_dict(
        {
            "merge_method": "slerp",
            "base_model": "/a",
            "models": [{"model": "/b"}, {"model": "/a"}],
            "parameters": {"t": 0.25},
            "dtype": "float32",
        }
    )
    assert [m.model for m in config.models] == ["/a", "/b"] and config.base_model is None
    assert config.method_params().t == 0.25


def test_mergekit_filter_conditions_become_overrides() -> None:
    config = config_from_dict(
        {
            "merge_method": "task_arithmetic",
            "base_model": "/b",
            "models": [
                {
                    "model": "/m",
                    "parameters": {"weight": [{"filter": "self_attn", "value": 0.2}, {"value": 0.7}]},
                }
            ],
            "parameters": {"lambda": [{"filter": "mlp", "value": 0.5}, {"filter": "embed", "value": 0.1}]},
        }
    )
    assert config.models[0].weight == 0.7
    assert [(o.pattern, o.weight, o.parameters) for o in config.overrides] == [
        ("embed", None, {"lambda": 0.1}),
        ("mlp", None, {"lambda": 0.5}),
        ("self_attn", 0.2, {}),
    ]  # reversed: mergekit's first match must be our last (winning) override


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            "merge_method: linear\nmodules: {text: {slices: []}}\nmodels: [{model: a}]\n",
            ["modules", "not supported"],
        ),
        (
            "merge_method: linear\nmodels:\n  - model: a\n"
            "    parameters: {weight: [{filter: mlp, value: {x: 1}}]}\n",
            ["models.0.parameters.weight.0.value", "not supported"],
        ),
        ("merge_method: linear\nmodels: [{model: a+lora/x}]\n", ["model+lora"]),
        ("merge_method: arcee_fusion\nmodels: [{model: a}]\n", ["merge_method", "'arcee_fusion'"]),
        ("merge_method: linear\nmodels: [{model: a}]\nchat_template: chatml\n", ["chat_template", "chatml"]),
    ],
)
def test_unsupported_mergekit_features_are_refused(tmp_path: Path, text: str, fragments: list[str]) -> None:
    message = refusal(tmp_path, text)
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("method: magic\nmodels: [{model: a}]\n", ["method", "unknown method 'magic'", "task_arithmetic"]),
        ("method: linear\nmodels: [{model: a, weight: abc}]\n", ["models.0.weight"]),
        ("method: linear\nmodels: [{model: a, weight: '0.5'}]\n", ["models.0.weight"]),
        ("method: linear\nmodels: [{model: a, weight: .nan}]\n", ["models.0.weight"]),
        (
            "method: ties\nbase_model: b\nmodels: [{model: a, parameters: {density: 1.5}}]\n",
            ["models.0.parameters", "density"],
        ),
        ("method: dare_ties\nbase_model: b\nmodels: [{model: a}]\nparameters: {density: 0}\n", ["density"]),
        (
            "method: ties\nbase_model: b\nmodels: [{model: a}]\nparameters: {densty: 0.5}\n",
            ["parameters.densty"],
        ),
        ("method: task_arithmetic\nmodels: [{model: a}]\n", ["base_model", "needs a base model"]),
        ("method: wise_ft\nbase_model: b\nmodels: [{model: a}, {model: c}]\n", ["models", "at most 1"]),
        ("method: linear\nmodels: [{model: a}]\noverrides: [{pattern: '('}]\n", ["overrides.0.pattern"]),
        (
            "method: linear\nmodels: [{model: a}]\noverrides: [{pattern: x, models: [z]}]\n",
            ["'z' names no model"],
        ),
        ("method: linear\nmodels: [{model: a}]\nmax_shard_size: lots\n", ["max_shard_size"]),
        ("method: linear\nmodels: [{model: a}]\ncolour: red\n", ["colour"]),
        ("method: linear\nmodels: []\n", ["models"]),
    ],
)
def test_bad_fields_are_one_line_naming_the_field(tmp_path: Path, text: str, fragments: list[str]) -> None:
    message = refusal(tmp_path, text)
    for fragment in fragments:
        assert fragment in message, message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    message = refusal(tmp_path, "method: linear\nmodels: [{model: a}\n")
    assert f"{tmp_path / 'merge.yaml'}:" in message


def test_override_parameters_are_validated_for_the_method(tmp_path: Path) -> None:
    message = refusal(
        tmp_path,
        "method: ties\nbase_model: b\nmodels: [{model: a}]\n"
        "overrides: [{pattern: x, parameters: {density: 2}}]\n",
    )
    assert "overrides.0.parameters" in message and "density" in message
    ok = MergeConfig.model_validate(
        {
            "method": "ties",
            "base_model": "b",
            "models": [{"model": "a"}],
            "overrides": [{"pattern": "x", "parameters": {"density": 0.2, "lambda": 0.5}}],
        }
    )
    assert ok.split_override(0) == ({"lambda": 0.5}, {"density": 0.2})


def test_sizes_parse_with_units() -> None:
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size(1234) == 1234
    with pytest.raises(ValueError, match="not a size"):
        parse_size("12 parsecs")
