"""The packaged demo specs validate and expand against the inputs the demo writes (no training here)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from model_factory import PLAN_CONFIG
from skillmerge.demo import (
    SHARED_REPLAY,
    WORLD_SIZES,
    results_record,
    shared_replay,
    step_seconds,
    write_data_inputs,
)
from skillmerge.experiment.dag import expand
from skillmerge.experiment.estimate import plan_text
from skillmerge.experiment.spec import load_spec

TINY = PLAN_CONFIG


def _inputs(root: Path, spec_name: str) -> Path:
    model = root / "smollm2-135m-instruct"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(TINY))
    save_file({"w": torch.zeros(2)}, str(model / "model.safetensors"))
    spec = write_data_inputs(
        root, full=spec_name == "demo_spec_full.yaml", sizes=dict.fromkeys(WORLD_SIZES[False], 16), replay=6
    )
    assert spec.read_bytes() == resources.files("skillmerge").joinpath(spec_name).read_bytes()
    return spec


@pytest.mark.parametrize(
    ("spec_name", "must_have"),
    [
        (
            "demo_spec.yaml",
            {
                "train/general",
                "train/rt/safety/pct100/seed0",
                "train/cft/safety/pct100/seed0",
                "train/skill/safety/pct100/seed0",
                "merge/ptm/task_arithmetic/safety/pct100/seed0/w0.5",
                "merge/ptm/linear/safety/pct100/seed0/w1",
                "merge/ptm/wise_ft/safety/pct100/seed0/w0.5",
            },
        ),
        (
            "demo_spec_full.yaml",
            {
                "train/cft_replay/science/cap128/seed0",
                "train/rt/safety/cap16/seed0",
                "merge/ptm/ties/safety/cap16/seed0/w0.5",
                "merge/ptm/dare_ties/science/cap128/seed0/w1.5",
                "merge/ptm/wise_ft/science/cap16/seed0/w1",
                "merge/multi/task_arithmetic/safety+science/validation",
                "merge/multi/ties/safety+science/heuristic",
                "eval-validation/ptm/task_arithmetic/science/cap16/seed0/w1",
            },
        ),
    ],
)
def test_packaged_demo_specs_expand(tmp_path: Path, spec_name: str, must_have: set[str]) -> None:
    steps = expand(load_spec(_inputs(tmp_path, spec_name)))
    ids = {s.id for s in steps}
    assert must_have <= ids, sorted(must_have - ids)
    if spec_name == "demo_spec.yaml":  # two ω × three methods: 9 evaluations of 256 + 128 test items
        assert not any(i.endswith("/w0.25") for i in ids)
        assert sum(s.kind == "eval" for s in steps) == 9
    # Every evaluation reads the world written beside the spec (a fingerprinted folder option).
    evals = [s for s in steps if s.kind == "eval" and s.config.record()["split"] == "test"]
    assert evals and all("eval.options.world-general.path" in s.inputs for s in evals)
    assert "training ≈" in plan_text(steps)


def test_anchors_are_theta_base_answers_to_ordinary_prompts() -> None:
    from skillmerge.data.records import read_jsonl

    path = resources.files("skillmerge").joinpath("world", "anchors.jsonl")
    records, report = read_jsonl(Path(str(path)))
    assert len(records) == 95 and not report.skipped
    assert {r.source for r in records} == {"general/anchor"}
    assert all(len(r.messages) == 2 and r.messages[1].content.endswith((".", "!", "?")) for r in records)


def test_shared_replay_takes_each_family_in_turn_and_inputs_are_rewritten(
    tmp_path: Path,
) -> None:
    spec = write_data_inputs(tmp_path, full=False, sizes=dict.fromkeys(WORLD_SIZES[False], 24), replay=9)
    lines = (tmp_path / "replay.jsonl").read_text(encoding="utf-8").splitlines()
    general = (tmp_path / "world" / "general-train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 9 and set(lines) <= set(general)  # the replay is shared with θ_G's data
    sources = [json.loads(line)["source"] for line in lines]
    assert len(set(sources[:6])) == 6  # one of each of the six families before any repeats
    everything = shared_replay(tmp_path / "world" / "general-train.jsonl", 1000)
    assert sorted(everything) == sorted(general)  # asking for more than there is: each record once
    # A second call with other sizes rewrites the world; nothing temporary is left behind.
    write_data_inputs(tmp_path, full=False, sizes=dict.fromkeys(WORLD_SIZES[False], 12), replay=3)
    assert len((tmp_path / "world" / "general-train.jsonl").read_text().splitlines()) == 12
    assert len((tmp_path / "replay.jsonl").read_text().splitlines()) == 3
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert spec.exists()


def test_a_cached_rerun_keeps_the_fresh_runs_timing_in_the_results_record() -> None:
    findings = {"F1": {"holds": False}}
    fresh = {"wall_seconds": 536.0, "full": False, "steps": {"total": 27, "ran": 27}, "findings": findings}
    cached = {"wall_seconds": 4.1, "full": False, "steps": {"total": 27, "ran": 0}, "findings": findings}
    assert results_record(fresh, cached) == {**fresh, "cached_rerun_seconds": 4.1}
    assert results_record(None, cached) == cached  # nothing fresh to keep
    other = {**cached, "findings": {"F1": {"holds": True}}}
    assert results_record(fresh, other) == other  # different results: the record is replaced
    partial = {**cached, "steps": {"total": 27, "ran": 5}}
    assert results_record(fresh, partial) == partial  # a partly fresh run is its own measurement
    assert results_record({**fresh, "full": True}, cached) == cached


def test_tables_printed_to_a_pipe_are_not_cut_to_80_columns() -> None:
    import io

    from rich.console import Console
    from rich.table import Table

    from skillmerge.demo import print_uncut

    table = Table(title="wide")
    for name in ("model", "general", "safety", "compliance (look-alikes)", "train tokens"):
        table.add_column(name)
    label = "PTM task_arithmetic ω=0.25 safety+science cap192"
    table.add_row(label, "39.1", "84.4", "93.8", "11,596")
    buffer = io.StringIO()
    piped = Console(file=buffer, width=80)  # what rich picks when stdout is not a terminal
    assert not piped.is_terminal
    print_uncut(piped, table)
    text = buffer.getvalue()
    assert label in text and "compliance (look-alikes)" in text and "11,596" in text
    assert max(len(line) for line in text.splitlines()) > 80


def test_the_machine_probe_reports_matmul_speed_and_threads() -> None:
    import torch

    from skillmerge.machine import matmul_gflops

    probe = matmul_gflops(seconds=0.2, size=256)
    assert probe["gflops"] > 0.1 and probe["threads"] == torch.get_num_threads() and probe["size"] == 256
    assert probe["seconds"] >= 0.2
    with pytest.raises(ValueError, match="seconds and size must be positive"):
        matmul_gflops(seconds=0)


def test_full_demo_general_mix_is_ten_times_the_largest_skill_sample() -> None:
    """The paper's ratio (|G| ≫ |D|) that F3 depends on: θ_G's records ≥ 10× any skill's largest sample
    (per-task caps × the skill's tasks, plus the shared replay)."""
    spec = yaml.safe_load(resources.files("skillmerge").joinpath("demo_spec_full.yaml").read_text())
    tasks = {"safety": 2, "science": 1}  # safety: harmful + look-alike records; science: passages
    general = WORLD_SIZES[True]["general"] + 95  # + the anchors
    for skill in spec["data"]["skills"]:
        largest = max(skill["sizes"]["caps"]) * tasks[skill["name"]] + SHARED_REPLAY[True]
        assert general >= 10 * largest, (skill["name"], general, largest)
        assert WORLD_SIZES[True][skill["name"]] >= max(skill["sizes"]["caps"]) * tasks[skill["name"]]


def test_step_seconds_sums_every_finished_steps_own_time(tmp_path: Path) -> None:
    for name, seconds in (("train--general.1", 540.5), ("eval--general.2", 17.25)):
        (tmp_path / "steps" / name).mkdir(parents=True)
        (tmp_path / "steps" / name / "manifest.json").write_text(json.dumps({"seconds": seconds}))
    (tmp_path / "steps" / "merge--failed.3").mkdir()  # a failed step has no manifest: not counted
    assert step_seconds(tmp_path) == pytest.approx(557.75)
    assert step_seconds(tmp_path / "empty") == 0.0
