"""The experiment runner on a tiny model: completion, cache hits, partial re-runs, failed branches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import make_chat_records
from skillmerge.data.records import ChatRecord, Message, write_jsonl
from skillmerge.errors import UsageError
from skillmerge.experiment.merge_recipe import merge_recipe
from skillmerge.experiment.runner import run_experiment
from skillmerge.experiment.status import STEPS_DIR, run_status
from skillmerge.experiment.steps import unflatten


def _skill_records(n: int, seed: int = 0) -> list[ChatRecord]:
    return [
        ChatRecord(
            (Message("user", f"Echo {i + seed}"), Message("assistant", f"echo {i + seed} echo")),
            id=f"s{i}",
            source="echo",
        )
        for i in range(n)
    ]


def _spec(root: Path, model_dir: Path, **training: dict) -> Path:
    data = root / "data"
    data.mkdir(exist_ok=True)
    if not (data / "general.jsonl").exists():
        write_jsonl(data / "general.jsonl", make_chat_records(48, seed=1))
        write_jsonl(data / "skill.jsonl", _skill_records(32))
    spec = {
        "name": "tiny",
        "models": {"base": str(model_dir)},
        "data": {
            "general": ["data/general.jsonl"],
            "skills": [
                {"name": "echo", "train": ["data/skill.jsonl"], "sizes": {"caps": [16]}, "score": "general"}
            ],
        },
        "methods": ["rt", "cft", "ptm"],
        "merge": {"methods": ["task_arithmetic"], "omegas": [0.5, 1.0]},
        "selection": {"rules": ["heuristic"]},
        "training": {"default": {"max_steps": 2, "batch_size": 4, "data": {"max_len": 64}}, **training},
        "eval": {"general": ["xstest"]},
    }
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _mtimes(run_dir: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (run_dir / STEPS_DIR).iterdir()}


def _run(spec: Path, run_dir: Path):
    return run_experiment(spec, run_dir, eval_limit=2, echo=lambda _line: None)


def test_rerun_hits_the_cache_and_changed_skill_data_reruns_only_its_branch(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    spec = _spec(tmp_path, tiny_model_dir)
    run_dir = tmp_path / "run"

    first = _run(spec, run_dir)
    # data 2, train general/rt/cft/skill 4, merge 2 ω, eval θ_G + rt + cft + 2 merges = 13 steps.
    assert first.ok and first.count("ran") == len(first.outcomes) == 13
    assert set(run_status(run_dir).values()) == {"done"}
    merge = next(p for p in (run_dir / STEPS_DIR).iterdir() if p.name.startswith("merge--ptm"))
    assert json.loads((merge / "manifest.json").read_text())["result"]["omegas"] in ([0.5], [1.0])
    assert (merge / "model" / "config.json").is_file()
    before = _mtimes(run_dir)

    second = _run(spec, run_dir)
    assert second.count("cached") == 13 and second.count("ran") == 0
    assert _mtimes(run_dir) == before

    write_jsonl(tmp_path / "data" / "skill.jsonl", _skill_records(32, seed=100), overwrite=True)
    third = _run(spec, run_dir)
    outcomes = third.by_id()
    ran = {step for step, outcome in outcomes.items() if outcome == "ran"}
    assert {step for step, outcome in outcomes.items() if outcome == "cached"} == {
        "data/general",
        "train/general",
        "eval/general",
    }
    assert len(ran) == 10 and all("echo" in step for step in ran)


def test_a_failing_step_blocks_its_dependents_and_other_branches_finish(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # Valid in the spec, fails at run time: 16 skill examples are fewer than one batch of 64.
    spec = _spec(tmp_path, tiny_model_dir, skill={"batch_size": 64})
    run_dir = tmp_path / "run"
    summary = _run(spec, run_dir)
    outcomes = summary.by_id()
    assert outcomes["train/skill/echo/cap16/seed0"] == "failed"
    blocked = {step for step, outcome in outcomes.items() if outcome == "blocked"}
    assert blocked == {
        "merge/ptm/task_arithmetic/echo/cap16/seed0/w0.5",
        "merge/ptm/task_arithmetic/echo/cap16/seed0/w1",
        "eval/ptm/task_arithmetic/echo/cap16/seed0/w0.5",
        "eval/ptm/task_arithmetic/echo/cap16/seed0/w1",
    }
    assert outcomes["eval/rt/echo/cap16/seed0"] == "ran" and outcomes["eval/cft/echo/cap16/seed0"] == "ran"
    error_file = next((run_dir / STEPS_DIR).glob("train--skill--*/error.json"))
    error = json.loads(error_file.read_text())
    assert error["type"] == "UsageError" and "fewer than one effective batch" in error["message"]
    assert error["traceback"]

    again = _run(spec, run_dir)  # the failed step is retried, everything finished stays
    assert again.by_id()["train/skill/echo/cap16/seed0"] == "failed"
    assert again.count("ran") == 0 and again.count("cached") == 8


def test_a_run_directory_of_another_spec_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    spec = _spec(tmp_path, tiny_model_dir)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"spec": "other", "eval_limit": 2}))
    with pytest.raises(UsageError, match="holds a run of"):
        _run(spec, run_dir)


def test_dry_run_writes_nothing_and_only_selects_ancestors(tmp_path: Path, tiny_model_dir: Path) -> None:
    spec = _spec(tmp_path, tiny_model_dir)
    lines: list[str] = []
    summary = run_experiment(spec, tmp_path / "run", dry_run=True, only="eval/cft", echo=lines.append)
    assert [o.id for o in summary.outcomes] == [
        "data/general",
        "train/general",
        "data/echo/cap16",
        "train/cft/echo/cap16/seed0",
        "eval/cft/echo/cap16/seed0",
    ]
    assert summary.count("pending") == 5 and not (tmp_path / "run").exists()
    assert "dry run: nothing written" in lines[-1]


def test_ptm_recipe_is_theta_g_plus_omega_tau_against_the_base() -> None:
    recipe = merge_recipe("task_arithmetic", "base", "general", ["d1", "d2"], [0.25, 0.5])
    assert recipe["base_model"] == "base"
    assert recipe["models"] == [
        {"model": "general", "weight": 1.0},
        {"model": "d1", "weight": 0.25},
        {"model": "d2", "weight": 0.5},
    ]
    wise = merge_recipe("wise_ft", "base", "general", ["d1"], [0.3])
    assert wise == {"method": "wise_ft", "base_model": "general", "models": [{"model": "d1", "weight": 0.3}]}
    with pytest.raises(UsageError, match="wise_ft interpolates two models"):
        merge_recipe("wise_ft", "base", "general", ["d1", "d2"], [0.3, 0.3])


def test_flat_recipe_fields_unflatten_into_sections() -> None:
    assert unflatten({"lr": 1e-4, "data.max_len": 64, "lora.r": 8}) == {
        "lr": 1e-4,
        "data": {"max_len": 64},
        "lora": {"r": 8},
    }


def test_a_run_killed_mid_way_continues_where_it_stopped(tmp_path: Path, tiny_model_dir: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = _spec(tmp_path, tiny_model_dir)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "skillmerge", "run", str(spec), "--out", str(run_dir)]
    command += ["--eval-limit", "2"]  # the same eval keys as _run
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((run_dir / STEPS_DIR).glob("*/manifest.json"))) >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = {p.parent.name for p in (run_dir / STEPS_DIR).glob("*/manifest.json")}
    assert 4 <= len(done_before) < 13

    resumed = _run(spec, run_dir)
    assert resumed.ok
    assert resumed.count("cached") == len(done_before)
    assert resumed.count("ran") == 13 - len(done_before)
    assert set(run_status(run_dir).values()) == {"done"}
    assert not [p for p in (run_dir / STEPS_DIR).iterdir() if p.name.startswith(".")]  # no half-written step


def test_report_reads_the_latest_plan_when_an_edited_spec_left_older_steps_behind(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from skillmerge.report.results import collect

    run_dir = tmp_path / "run"
    assert _run(_spec(tmp_path, tiny_model_dir), run_dir).ok
    # The same spec with CFT trained longer: same step ids, new keys for CFT's training and evaluation.
    assert _run(_spec(tmp_path, tiny_model_dir, cft={"max_steps": 3}), run_dir).ok
    folders = [p.name for p in (run_dir / STEPS_DIR).iterdir()]
    assert sum(name.startswith("train--cft--") for name in folders) == 2  # the old one stays as a cache
    plan = json.loads((run_dir / "run.json").read_text())["plan"]
    assert all(name in folders for name in plan.values()) and len(plan) == 13

    results = collect(run_dir)
    cft = [row for row in results.training if row.id.startswith("train/cft")]
    assert len(cft) == 1 and cft[0].cost.optimizer_steps == 3
    evals = [row for row in results.evals if row.id.startswith("eval/cft")]
    assert len(evals) == 1 and evals[0].cost is not None and evals[0].cost.optimizer_steps == 3

    # Back to the first spec: every step cached, and the report follows the plan back to its steps.
    again = _run(_spec(tmp_path, tiny_model_dir), run_dir)
    assert again.count("cached") == 13
    back = collect(run_dir)
    assert [row.cost.optimizer_steps for row in back.training if row.id.startswith("train/cft")] == [2]
    assert [row.cost.optimizer_steps for row in back.evals if row.id.startswith("eval/cft") and row.cost] == [
        2
    ]
