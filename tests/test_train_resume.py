"""Kill-safe resume: SIGKILL a training process at a random moment, resume, end bitwise-equal on CPU."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from skillmerge.data.records import ChatRecord, write_jsonl
from skillmerge.errors import UsageError
from skillmerge.models.io import read_manifest
from skillmerge.train import load_train_config, run
from skillmerge.train.checkpoint import list_checkpoints


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # The killed run is a subprocess with OMP_NUM_THREADS=1: same thread count, same float sums.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sigkill_then_resume_gives_bitwise_identical_weights(
    tiny_model_dir: Path, chat_records: list[ChatRecord], tmp_path: Path
) -> None:
    data = tmp_path / "train.jsonl"
    write_jsonl(data, chat_records)
    config_file = tmp_path / "train.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model_dir),
                "out": str(tmp_path / "resumed"),
                "data": {"files": [str(data)], "template": "chatml", "max_len": 128},
                "epochs": 3,  # 90 steps of 4: long enough to be killed mid-run
                "lr": 3e-3,
                "batch_size": 4,
                "save_steps": 5,
                "progress": False,
                "log_steps": 10_000,
            }
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "skillmerge", "train", str(config_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    checkpoints = tmp_path / "resumed.checkpoints"
    deadline = time.monotonic() + 90
    while not list_checkpoints(checkpoints) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.3))  # somewhere after the first checkpoint, often mid-step
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert not (tmp_path / "resumed").exists()
    step = int(list_checkpoints(checkpoints)[-1].name.split("-")[1])
    assert 5 <= step < 90

    # A checkpoint of another config is refused, naming the field that differs.
    with pytest.raises(UsageError, match=r"different config: lr: checkpoint 0.003 vs now 0.001"):
        run(load_train_config(config_file, resume=True, lr=1e-3))

    resumed = run(load_train_config(config_file, resume=True))
    straight = run(load_train_config(config_file, out=str(tmp_path / "straight")))
    assert resumed.steps == straight.steps == 90
    a = load_file(tmp_path / "resumed" / "model.safetensors")
    b = load_file(tmp_path / "straight" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (
        read_manifest(tmp_path / "resumed")["weights_fingerprint"]
        == read_manifest(tmp_path / "straight")["weights_fingerprint"]
    )
    losses = [
        line.split('"loss": ')[1].split(",")[0] for line in (tmp_path / "resumed" / "metrics.jsonl").open()
    ]
    straight_losses = [
        line.split('"loss": ')[1].split(",")[0] for line in (tmp_path / "straight" / "metrics.jsonl").open()
    ]
    assert losses == straight_losses  # one line per step, none repeated or lost across the kill
    assert not checkpoints.exists()  # a finished run drops its checkpoints
