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
