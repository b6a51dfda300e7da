"""The packaged demo specs validate and expand against the inputs the demo writes (no training here)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model_factory import PLAN_CONFIG
from skillmerge.experiment.dag import expand, plan_text
from skillmerge.experiment.spec import load_spec
from skillmerge.world import make_world, write_world

TINY = PLAN_CONFIG


def _inputs(root: Path, spec_name: str) -> Path:
    model = root / "smollm2-135m-instruct"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(TINY))
    save_file({"w": torch.zeros(2)}, str(model / "model.safetensors"))
    write_world(
        root / "world", make_world(0, train={"general": 16, "science": 16, "safety": 16, "coding": 16})
    )
    package = resources.files("skillmerge")
    (root / "anchors.jsonl").write_bytes(package.joinpath("world", "anchors.jsonl").read_bytes())
    spec = root / "demo.yaml"
    spec.write_bytes(package.joinpath(spec_name).read_bytes())
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
                "merge/ptm/task_arithmetic/safety/pct100/seed0/w0.25",
                "merge/ptm/linear/safety/pct100/seed0/w1",
                "merge/ptm/wise_ft/safety/pct100/seed0/w0.5",
            },
        ),
        (
            "demo_spec_full.yaml",
            {
                "train/cft_replay/science/cap192/seed0",
                "merge/ptm/ties/safety/cap48/seed0/w0.25",
                "merge/multi/task_arithmetic/safety+science/validation",
                "eval-validation/ptm/task_arithmetic/science/cap96/seed0/w0.75",
            },
        ),
    ],
)
def test_packaged_demo_specs_expand(tmp_path: Path, spec_name: str, must_have: set[str]) -> None:
    steps = expand(load_spec(_inputs(tmp_path, spec_name)))
    ids = {s.id for s in steps}
    assert must_have <= ids, sorted(must_have - ids)
    # Every evaluation reads the world written beside the spec (a fingerprinted folder option).
    evals = [s for s in steps if s.kind == "eval" and s.config["split"] == "test"]
    assert evals and all("eval.options.world-general.path" in s.inputs for s in evals)
    assert "training ≈" in plan_text(steps)


def test_anchors_are_theta_base_answers_to_ordinary_prompts() -> None:
    from skillmerge.data.records import read_jsonl

    path = resources.files("skillmerge").joinpath("world", "anchors.jsonl")
    records, report = read_jsonl(Path(str(path)))
    assert len(records) == 95 and not report.skipped
    assert {r.source for r in records} == {"general/anchor"}
    assert all(len(r.messages) == 2 and r.messages[1].content.endswith((".", "!", "?")) for r in records)
