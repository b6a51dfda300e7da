"""The spec → DAG expansion: step counts, stable content-addressed keys, topological order, dry-run plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model_factory import PLAN_CONFIG
from skillmerge.errors import UsageError
from skillmerge.experiment.dag import expand
from skillmerge.experiment.estimate import model_params, plan_text
from skillmerge.experiment.spec import load_spec
from skillmerge.experiment.status import run_status, step_dir

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo-spec.yaml"
TINY = PLAN_CONFIG


def _chat(n: int, source: str, length: int = 40) -> str:
    rows = []
    for i in range(n):
        messages = [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "x" * length}]
        rows.append(json.dumps({"messages": messages, "source": source}))
    return "\n".join(rows) + "\n"


def _inputs(root: Path) -> Path:
    """The example spec copied into ``root`` with the inputs it names (a tiny model dir, chat JSONL)."""
    shutil.copy(EXAMPLE, root / "spec.yaml")
    model = root / "demo-models" / "tiny-base"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(TINY))
    save_file({"w": torch.zeros(2)}, str(model / "model.safetensors"))
    data = root / "demo-data"
    data.mkdir()
    (data / "general.jsonl").write_text(_chat(10, "g"))
    for skill in ("safety", "coding"):
        (data / f"{skill}-train.jsonl").write_text(_chat(3, f"{skill}-a") + _chat(5, f"{skill}-b"))
        (data / f"{skill}-val.jsonl").write_text(_chat(2, skill))
    return root / "spec.yaml"


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    return _inputs(tmp_path)


def _keys(spec_path: Path) -> dict[str, str]:
    return {s.id: s.key for s in expand(load_spec(spec_path))}


def test_two_skills_two_sizes_expand_to_the_expected_steps(spec_path: Path) -> None:
    steps = expand(load_spec(spec_path))
    kinds = {k: sum(s.kind == k for s in steps) for k in ("data", "train", "merge", "eval")}
    # data: general + 2 skills × 2 sizes; train: θ_G + (rt, cft, cft_replay, θ_D) × 4;
    # merge: PTM 4 × 2 ω + multi-skill (the one pair) × 2 rules;
    # eval: test of θ_G + 12 trained + 10 merged; validation of θ_G + 8 PTM merges.
    assert kinds == {"data": 5, "train": 17, "merge": 10, "eval": 32}
    assert len({s.id for s in steps}) == len(steps) == len({s.key for s in steps})


def test_steps_come_in_topological_order(spec_path: Path) -> None:
    seen: set[str] = set()
    for step in expand(load_spec(spec_path)):
        assert set(step.deps) <= seen, step.id
        seen.add(step.id)


def test_same_spec_gives_same_keys(spec_path: Path) -> None:
    assert _keys(spec_path) == _keys(spec_path)


def test_reordering_yaml_keys_keeps_keys(spec_path: Path) -> None:
    import yaml

    before = _keys(spec_path)
    raw = yaml.safe_load(spec_path.read_text())
    reordered = {k: raw[k] for k in reversed(list(raw))}
    reordered["training"] = {"default": dict(reversed(list(raw["training"]["default"].items())))}
    spec_path.write_text(yaml.safe_dump(reordered, sort_keys=False))
    assert _keys(spec_path) == before


def test_changing_one_skill_data_changes_only_its_downstream_keys(spec_path: Path) -> None:
    before = _keys(spec_path)
    (spec_path.parent / "demo-data" / "coding-train.jsonl").write_text(_chat(8, "coding-c"))
    after = _keys(spec_path)
    changed = {i for i in before if before[i] != after[i]}
    assert changed, "editing a skill's data must change some keys"
    for step_id in changed:
        assert "coding" in step_id, step_id  # coding's own steps and the multi-skill merges over it
    assert any(i.startswith("merge/multi/") for i in changed)
    assert before["train/general"] == after["train/general"]
    assert before["train/cft/safety/cap2/seed0"] == after["train/cft/safety/cap2/seed0"]


def test_changing_a_training_recipe_changes_train_keys(spec_path: Path) -> None:
    before = _keys(spec_path)
    text = spec_path.read_text().replace("max_steps: 2", "max_steps: 3")
    spec_path.write_text(text)
    after = _keys(spec_path)
    assert before["data/general"] == after["data/general"]
    assert before["train/rt/safety/cap2/seed0"] != after["train/rt/safety/cap2/seed0"]


def test_missing_model_is_refused_naming_the_field(spec_path: Path) -> None:
    shutil.rmtree(spec_path.parent / "demo-models")
    with pytest.raises(UsageError, match=r"^models\.base: .*tiny-base does not exist$"):
        expand(load_spec(spec_path))


def test_dry_run_plan_estimates_tokens_and_flops(spec_path: Path) -> None:
    steps = {s.id: s for s in expand(load_spec(spec_path))}
    # caps 2 over tasks of 3 and 5 records → 4 examples; each 2 + 40 chars ≈ 10.5 tokens (4 chars/token).
    cft = steps["train/cft/safety/cap2/seed0"].estimate
    assert cft["examples"] == 4
    assert cft["tokens"] == pytest.approx(4 * 42 / 4)
    n = model_params(str(spec_path.parent / "demo-models" / "tiny-base"))
    assert n == 32 * 8 + 2 * (8 * 8 * 2 + 2 * 8 * 4 + 3 * 8 * 16 + 2 * 8) + 8
    assert cft["flops"] == pytest.approx(6 * n * cft["tokens"])
    rt = steps["train/rt/safety/cap4/seed0"].estimate
    assert rt["examples"] == 10 + 7  # general + min(4,3) + min(4,5)
    assert steps["train/cft_replay/coding/cap4/seed0"].estimate["examples"] == 14
    text = plan_text(list(steps.values()))
    assert "train train/cft/safety/cap2/seed0" in text
    assert text.splitlines()[-1].startswith("64 steps (5 data, 17 train, 10 merge, 32 eval)")


def test_flops_are_unknown_without_a_model_config(spec_path: Path) -> None:
    (spec_path.parent / "demo-models" / "tiny-base" / "config.json").write_text("{}")
    steps = expand(load_spec(spec_path))
    assert steps[1].estimate["flops"] is None and steps[1].kind == "train"
    assert "FLOPs≈unknown" in plan_text(steps)


def test_status_reports_done_failed_and_pending(spec_path: Path, tmp_path: Path) -> None:
    steps = expand(load_spec(spec_path))[:3]
    run = tmp_path / "run"
    step_dir(run, steps[0]).mkdir(parents=True)
    (step_dir(run, steps[0]) / "manifest.json").write_text("{}")
    step_dir(run, steps[1]).mkdir(parents=True)
    (step_dir(run, steps[1]) / "error.json").write_text("{}")
    states = run_status(run, steps)
    assert list(states.values()) == ["done", "failed", "pending"]
    assert sorted(run_status(run).values()) == ["done", "failed"]
