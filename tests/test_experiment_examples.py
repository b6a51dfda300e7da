"""The example specs: the tiny demo's inputs generate and plan here; the GPU spec plans offline."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from skillmerge.experiment.dag import expand
from skillmerge.experiment.runner import run_experiment
from skillmerge.experiment.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _generator():
    spec = importlib.util.spec_from_file_location("make_demo_inputs", EXAMPLES / "make_demo_inputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_inputs_generate_and_the_demo_spec_plans_and_runs_a_branch(tmp_path: Path) -> None:
    written = _generator().make_demo_inputs(tmp_path)
    assert (written["model"] / "config.json").is_file()
    assert len(written["general"].read_text().splitlines()) == 48
    again = _generator().make_demo_inputs(tmp_path / "again")  # seeded: the same data every time
    assert again["safety-train"].read_text() == written["safety-train"].read_text()
    shutil.copy(EXAMPLES / "demo-spec.yaml", tmp_path / "demo-spec.yaml")
    lines: list[str] = []
    plan = run_experiment(tmp_path / "demo-spec.yaml", tmp_path / "run", dry_run=True, echo=lines.append)
    assert plan.count("pending") == 64 and not (tmp_path / "run").exists()
    assert lines[0].startswith("data  data/general")
    # One real branch end to end: the general model, its data and its evaluation (1 item per suite).
    ran = run_experiment(
        tmp_path / "demo-spec.yaml", tmp_path / "run", only="eval/general", eval_limit=1, echo=lambda _: None
    )
    assert ran.ok and ran.by_id() == {"data/general": "ran", "train/general": "ran", "eval/general": "ran"}


def test_gpu_spec_plans_offline_without_downloading() -> None:
    spec = load_spec(EXAMPLES / "tulu-llama.yaml")
    steps = expand(spec)
    assert spec.models.base == "hub:meta-llama/Llama-2-7b-hf"
    assert spec.launcher.accelerate_config and spec.launcher.accelerate_config.endswith("fsdp.yaml")
    general = next(s for s in steps if s.id == "train/general")
    assert general.estimate["params"] == 6_738_415_616 and general.estimate["tokens"] is None
    ties = next(s for s in steps if s.id.startswith("merge/ptm/dare_ties/"))
    assert ties.config.record()["parameters"] == {"normalize": False, "density": 0.3}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "skillmerge", "run", str(EXAMPLES / "tulu-llama.yaml"), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "604 steps (7 data, 25 train, 186 merge, 386 eval); training ≈ unknown tokens" in done.stdout
