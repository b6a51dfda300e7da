"""Training steps as ``accelerate launch`` children (the spec's ``training.launcher``): DDP, FSDP, ZeRO-3."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from skillmerge.errors import SkillmergeError
from skillmerge.experiment.spec import Launcher

LAUNCH_LOG = "launch.log"


def launch_command(config_file: Path, launcher: Launcher, port: int) -> list[str]:
    """``python -m accelerate.commands.launch --config_file C [--num_processes N] --main_process_port P
    -m skillmerge train CONFIG.yaml`` (a free port each time, so concurrent runs do not collide)."""
    if launcher.accelerate_config is None:
        raise ValueError("launch_command needs an accelerate config")  # callers check first
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        launcher.accelerate_config,
    ]
    if launcher.num_processes is not None:
        command += ["--num_processes", str(launcher.num_processes)]
    command += ["--main_process_port", str(port), "-m", "skillmerge", "train", str(config_file)]
    return command


def launch_train(fields: dict[str, Any], launcher: Launcher, out: Path) -> dict[str, Any]:
    """Train in ``accelerate launch`` child processes: the config goes to ``out/train.yaml``, the child's
    output to ``out/launch.log``; the result is read back from the trained model's ``manifest.json``."""
    import yaml

    config_file = out / "train.yaml"
    config_file.write_text(yaml.safe_dump(fields, sort_keys=True), encoding="utf-8")
    log = out / LAUNCH_LOG
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(
            launch_command(config_file, launcher, _free_port()),
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise SkillmergeError(f"accelerate launch exited with code {done.returncode}: {' | '.join(tail)}")
    manifest = json.loads((Path(fields["out"]) / "manifest.json").read_text(encoding="utf-8"))
    return {
        "final_loss": manifest["final_loss"],
        "steps": manifest["cost"]["optimizer_steps"],
        "cost": manifest["cost"],
        "processes": manifest.get("processes"),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
