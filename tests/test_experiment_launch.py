"""Training steps as ``accelerate launch`` children: the command line, and one real one-process launch."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from conftest import make_chat_records
from skillmerge.data.records import write_jsonl
from skillmerge.experiment.launch import LAUNCH_LOG, launch_command, launch_train
from skillmerge.experiment.spec import Launcher

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = REPO / "configs" / "accelerate"


def test_launch_command_names_config_processes_port_and_train_yaml(tmp_path: Path) -> None:
    launcher = Launcher(accelerate_config=str(ACCELERATE / "cpu-2proc.yaml"), num_processes=2)
    command = launch_command(tmp_path / "train.yaml", launcher, port=29999)
    assert command == [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ACCELERATE / "cpu-2proc.yaml"),
        "--num_processes",
        "2",
        "--main_process_port",
        "29999",
        "-m",
        "skillmerge",
        "train",
        str(tmp_path / "train.yaml"),
    ]
    plain = launch_command(tmp_path / "t.yaml", Launcher(accelerate_config="c.yaml"), port=1)
    assert "--num_processes" not in plain


def test_a_launched_training_step_writes_its_model_and_reports_its_cost(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    torch.set_num_threads(1)
    data = tmp_path / "train.jsonl"
    write_jsonl(data, make_chat_records(16, seed=3))
    fields = {
        "model": str(tiny_model_dir),
        "out": str(tmp_path / "model"),
        "data": {"files": [str(data)], "max_len": 48},
        "max_steps": 2,
        "batch_size": 4,
        "seed": 0,
        "progress": False,
    }
    result = launch_train(fields, Launcher(accelerate_config=str(ACCELERATE / "single.yaml")), tmp_path)
    assert result["steps"] == 2 and result["processes"] == 1
    assert result["final_loss"] > 0 and result["cost"]["tokens"] > 0
    assert (tmp_path / "model" / "config.json").is_file()
    assert "model" in (tmp_path / "train.yaml").read_text()
    assert (tmp_path / LAUNCH_LOG).read_text()  # the child's output is kept beside the model
