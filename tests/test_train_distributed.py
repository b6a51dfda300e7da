"""Two CPU processes (gloo, ``accelerate launch``) follow the same loss curve as one process.

Same effective batch (8 = 2 processes × batch 4 × accumulation 1 = 1 process × batch 4 × accumulation 2).
Tolerance: 1e-5 relative per step. The loss is normalised by the targets of the whole effective batch, so
the only difference is float summation order in the gradient all-reduce (in practice it is exact).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from skillmerge.data.records import ChatRecord, write_jsonl
from skillmerge.models.io import read_manifest
from skillmerge.train import load_train_config, run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_cpu_processes_give_the_same_loss_curve_as_one(
    tiny_model_dir: Path, chat_records: list[ChatRecord], tmp_path: Path
) -> None:
    data = tmp_path / "train.jsonl"
    write_jsonl(data, chat_records)
    config_file = tmp_path / "train.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model_dir),
                "out": str(tmp_path / "two"),
                "data": {"files": [str(data)], "template": "chatml", "max_len": 128},
                "max_steps": 8,
                "lr": 3e-3,
                "batch_size": 4,
                "effective_batch_size": 8,
                "progress": False,
            }
        )
    )
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "configs" / "accelerate" / "cpu-2proc.yaml"),
        "--main_process_port",
        str(_free_port()),
        "-m",
        "skillmerge",
        "train",
        str(config_file),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es) × batch 4 × accumulation 1 = effective batch 8" in done.stdout

    run(load_train_config(config_file, out=str(tmp_path / "one")))
    one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 8
    for a, b in zip(one, two, strict=True):
        assert a["loss_tokens"] == b["loss_tokens"]  # the same examples in every step
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    assert one[-1]["loss"] < one[0]["loss"]
    manifests = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "two")
    assert [(m["processes"], m["grad_accum"]) for m in manifests] == [(1, 2), (2, 1)]
