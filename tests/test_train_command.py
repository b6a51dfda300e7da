"""``skillmerge train`` flags and YAML: flags override the file, bad values are one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from skillmerge.data.records import ChatRecord, write_jsonl
from skillmerge.errors import UsageError
from skillmerge.models.io import read_manifest
from skillmerge.train.command import train_command


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command()(train_command)
    return app


def test_flags_override_the_yaml_and_train(
    app: typer.Typer, tiny_model_dir: Path, chat_records: list[ChatRecord], tmp_path: Path
) -> None:
    data = tmp_path / "train.jsonl"
    write_jsonl(data, chat_records)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"model": "not-used", "lr": 5.0, "data": {"max_len": 64}}))
    out = tmp_path / "out"
    args = [str(config), "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
            "--template", "chatml", "--lr", "1e-3", "--max-steps", "2", "--batch-size", "2",
            "--grad-accum", "2", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest["config"]["lr"] == 1e-3  # the flag beat the YAML
    assert manifest["config"]["data"]["max_len"] == 64  # the YAML beat the preset
    assert manifest["config"]["model"] == str(tiny_model_dir)
    assert (manifest["grad_accum"], manifest["effective_batch_size"]) == (2, 4)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1


def test_learning_rate_flag_not_positive_is_a_one_line_error(app: typer.Typer, tmp_path: Path) -> None:
    args = ["--model", "m", "--data", "d.jsonl", "--out", str(tmp_path / "o"), "--lr", "0"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, UsageError)
    assert str(result.exception) == "train: lr: learning rate must be > 0, got 0.0"
    assert result.exception.exit_code == 2


def test_every_config_field_is_a_flag_with_its_description() -> None:
    from skillmerge.train.command import FLAGS
    from skillmerge.train.config import DataConfig, LoraConfig, TrainConfig

    paths = {flag.path for flag in FLAGS}
    expected = {n for n in TrainConfig.model_fields if n not in ("data", "lora")}
    expected |= {f"data.{n}" for n in DataConfig.model_fields} | {
        f"lora.{n}" for n in LoraConfig.model_fields
    }
    assert paths == expected
    names = [name.split("/")[0] for flag in FLAGS for name in flag.names]
    assert len(names) == len(set(names))  # no two fields share a flag
    by_path = {flag.path: flag for flag in FLAGS}
    assert by_path["data.max_len"].names == ("--max-len",)
    assert by_path["lora.r"].names == ("--lora-r",)
    assert by_path["gradient_checkpointing"].names == (
        "--gradient-checkpointing/--no-gradient-checkpointing",
    )
    assert by_path["lr"].help == TrainConfig.model_fields["lr"].description
    assert "One of: fp32, bf16." in by_path["precision"].help


def test_a_field_without_description_cannot_become_a_flag() -> None:
    from pydantic import BaseModel

    from skillmerge.train.command import config_flags

    class Undocumented(BaseModel):
        steps: int = 1

    with pytest.raises(TypeError, match="steps has no description"):
        config_flags(Undocumented)


def test_set_reaches_any_field_and_names_a_typo() -> None:
    from skillmerge.train.command import parse_set

    assert parse_set(["lora.dropout=0.1", "max_grad_norm=null", "freeze=[embed_tokens]", "lr=5e-5"]) == {
        "lora": {"dropout": 0.1},
        "max_grad_norm": None,
        "freeze": ["embed_tokens"],
        "lr": 5e-5,
    }
    with pytest.raises(
        UsageError, match=r"no TrainConfig field 'data.max_lenn'; did you mean 'data.max_len'\?"
    ):
        parse_set(["data.max_lenn=12"])
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_set(["lr"])


def test_layers_flags_over_set_over_yaml_over_preset_and_the_batch_rule_once(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skillmerge.train as train_package

    seen: list = []
    monkeypatch.setattr(train_package, "run", lambda config: seen.append(config) or _Done(config.out))
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": "m",
                "out": "o",
                "preset": "paper",
                "lr": 1.0,
                "data": {"max_len": 64, "template": "tulu"},
            }
        )
    )
    args = [
        str(config),
        "--set",
        "lr=2.0",
        "--set",
        "data.max_len=32",
        "--max-len",
        "16",
        "--grad-accum",
        "3",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (built,) = seen
    assert built.lr == 2.0  # --set beat the YAML
    assert (
        built.data.max_len == 16 and built.data.template == "tulu"
    )  # the flag beat --set; the YAML's rest stays
    assert (built.grad_accum, built.effective_batch_size) == (3, None)  # --grad-accum cleared paper's 128
    assert built.epochs == 2 and built.data.packing is False  # the preset's


class _Done:
    def __init__(self, out: str) -> None:
        self.out, self.final_loss = out, 0.0
