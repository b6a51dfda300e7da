"""The arm extension point: an arm written and registered outside the package plans, validates and runs.

The toy arm is "PTM from θ_G": θ_D' trained from θ_G on the skill data, then θ_G + ω·(θ_D' − θ_G) — one new
file's worth of code (the class below) plus its registration, and nothing else in the package changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from conftest import make_chat_records
from skillmerge.cli import run_cli
from skillmerge.data.records import ChatRecord, Message, write_jsonl
from skillmerge.experiment.arms import ARMS, Arm, arm_names, register_arm
from skillmerge.experiment.merge_recipe import FORMS
from skillmerge.experiment.planner import Planner
from skillmerge.experiment.spec import ExperimentSpec
from skillmerge.experiment.status import STEPS_DIR
from skillmerge.experiment.step_configs import PtmMergeConfig, TrainStepConfig


class PtmFromGeneralArm(Arm):
    """θ_D' = θ_G finetuned on D under its own recipe label; merged back into θ_G at ω 0.5."""

    name: ClassVar[str] = "toy_ptm_from_general"
    trains: ClassVar[tuple[str, ...]] = ("cft",)

    def check(self, spec: ExperimentSpec) -> None:
        if "validation" in spec.selection.rules:
            raise ValueError("methods: toy_ptm_from_general picks no ω; use selection.rules: [heuristic]")

    def plan(self, planner: Planner) -> None:
        for cell in planner.cells():
            train = TrainStepConfig(
                recipe="toy_skill_from_general",
                train=planner.spec.train_fields("cft"),
                seed=cell.seed,
                start="general",
                data=(planner.skill_data(cell),),
            )
            theta = planner.train(f"train/toy/{cell.tag}", train)
            form = FORMS["wise_ft"]  # θ_G + ω·(θ − θ_G): a task vector against θ_G
            merge = PtmMergeConfig(
                merge="wise_ft", omega=0.5, formula=form.formula, parameters={}, model=theta
            )
            merged = planner.merge(f"merge/toy/{cell.tag}/w0.5", merge, (theta,))
            planner.evaluate(merged, f"toy/{cell.tag}/w0.5")


@pytest.fixture
def toy_arm() -> Iterator[Arm]:
    arm = register_arm(PtmFromGeneralArm())
    yield arm
    ARMS.pop(arm.name)


def _spec(root: Path, model_dir: Path, rules: list[str]) -> Path:
    data = root / "data"
    data.mkdir(exist_ok=True)
    write_jsonl(data / "general.jsonl", make_chat_records(32, seed=1), overwrite=True)
    echo = [
        ChatRecord((Message("user", f"Echo {i}"), Message("assistant", f"echo {i} echo")), id=f"e{i}")
        for i in range(16)
    ]
    write_jsonl(data / "skill.jsonl", echo, overwrite=True)
    spec = {
        "name": "toy-arm",
        "models": {"base": str(model_dir)},
        "data": {
            "general": ["data/general.jsonl"],
            "skills": [
                {
                    "name": "echo",
                    "train": ["data/skill.jsonl"],
                    "validation": ["data/skill.jsonl"],
                    "score": "general",
                }
            ],
        },
        "methods": ["toy_ptm_from_general"],
        "selection": {"rules": rules},
        "training": {"default": {"max_steps": 2, "batch_size": 4, "data": {"max_len": 64}}},
        "eval": {"general": ["xstest"]},
    }
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_an_unregistered_arm_is_refused_like_any_unknown_method(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "toy_ptm_from_general" not in arm_names()
    code = run_cli(["run", str(_spec(tmp_path, tiny_model_dir, ["heuristic"])), "--dry-run"])
    assert code == 2
    assert (
        "methods.0: Input should be 'rt', 'cft', 'cft_replay', 'ptm', 'ptm_general' or 'multi_skill'"
        in capsys.readouterr().err
    )


def test_an_arms_own_spec_rule_is_a_one_line_error(
    tmp_path: Path, tiny_model_dir: Path, toy_arm: Arm, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["run", str(_spec(tmp_path, tiny_model_dir, ["validation"])), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "toy_ptm_from_general picks no ω" in err


def test_a_toy_arm_registered_outside_the_package_runs_through_skillmerge_run(
    tmp_path: Path, tiny_model_dir: Path, toy_arm: Arm, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, tiny_model_dir, ["heuristic"])
    run_dir = tmp_path / "run"
    assert run_cli(["run", str(spec), "--out", str(run_dir), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "train train/toy/echo/pct100/seed0" in plan
    assert "arm toy_ptm_from_general: 1 training(s)" in plan and "arm general: 1 training(s)" in plan

    assert run_cli(["run", str(spec), "--out", str(run_dir), "--eval-limit", "2"]) == 0
    manifests = {
        json.loads((p / "manifest.json").read_text())["id"]: json.loads((p / "manifest.json").read_text())
        for p in (run_dir / STEPS_DIR).iterdir()
    }
    assert set(manifests) == {
        "data/general",
        "data/echo/pct100",
        "train/general",
        "eval/general",
        "train/toy/echo/pct100/seed0",
        "merge/toy/echo/pct100/seed0/w0.5",
        "eval/toy/echo/pct100/seed0/w0.5",
    }
    trained = manifests["train/toy/echo/pct100/seed0"]
    assert trained["config"]["recipe"] == "toy_skill_from_general"
    assert trained["deps"] == ["train/general", "data/echo/pct100"]  # trained from θ_G, on D
    assert trained["result"]["steps"] == 2
    recipe = manifests["merge/toy/echo/pct100/seed0/w0.5"]["result"]["recipe"]
    general_dir = next(p for p in (run_dir / STEPS_DIR).iterdir() if p.name.startswith("train--general."))
    assert recipe["method"] == "wise_ft" and recipe["base_model"] == str(general_dir / "model")
    assert recipe["models"] == [
        {"model": str(run_dir / STEPS_DIR / _dirname(manifests, trained)), "weight": 0.5}
    ]
    scores = manifests["eval/toy/echo/pct100/seed0/w0.5"]["result"]["scores"]
    assert scores["general"] is not None

    # The report reads results only: the new arm's best row is in the skill table, costed by its training.
    assert run_cli(["report", str(run_dir)]) == 0
    assert (run_dir / "report" / "report.html").is_file()
    table = json.loads((run_dir / "report" / "results.json").read_text())["skill_tables"]["echo"]
    toy = next(row for row in table if row["label"] == "best toy")
    assert toy["id"] == "eval/toy/echo/pct100/seed0/w0.5"
    assert toy["cost"]["optimizer_steps"] == 2 and toy["cost"]["flops"] == trained["result"]["cost"]["flops"]


def _dirname(manifests: dict, manifest: dict) -> str:
    return f"{manifest['id'].replace('/', '--')}.{manifest['key'][:16]}/model"
