"""Spec validation: bad input is one line ``FILE: field: problem`` before any work."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from skillmerge.errors import UsageError
from skillmerge.experiment.spec import load_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo-spec.yaml"
RAW: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())


def _load(tmp_path: Path, raw: dict[str, Any]) -> Any:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


def _refused(tmp_path: Path, edit: Any, pattern: str) -> None:
    raw = copy.deepcopy(RAW)
    edit(raw)
    with pytest.raises(UsageError) as info:
        _load(tmp_path, raw)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "spec.yaml") + ": ")
    assert pattern in message, message


def test_example_spec_validates_with_paths_from_its_folder() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.models.base == str(EXAMPLE.parent / "demo-models" / "tiny-base")
    assert [s.name for s in spec.data.skills] == ["safety", "coding"]
    assert spec.merge.omega_values() == [0.5, 1.0]


def test_default_omega_sweep_is_tenths_to_one(tmp_path: Path) -> None:
    raw = copy.deepcopy(RAW)
    del raw["merge"]["omegas"]
    assert _load(tmp_path, raw).merge.omega_values() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def test_unknown_method_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, lambda r: r["methods"].append("magic"), "methods.5: Input should be")


def test_unknown_suite_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, lambda r: r["eval"]["safety"].append("nope"), "unknown suite 'nope'")


def test_unknown_score_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, lambda r: r["eval"].update(vibes=["general"]), "unknown score 'vibes'")


def test_skill_without_validation_is_refused_for_validation_pick(tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        del raw["data"]["skills"][1]["validation"]

    _refused(tmp_path, edit, "data.skills.1.validation: skill 'coding' has no validation data")


def test_skill_without_validation_is_fine_for_heuristic_only(tmp_path: Path) -> None:
    raw = copy.deepcopy(RAW)
    del raw["data"]["skills"][1]["validation"]
    raw["selection"]["rules"] = ["heuristic"]
    assert _load(tmp_path, raw).data.skills[1].validation == []


def test_empty_omega_range_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, lambda r: r["merge"].update(omegas={"start": 1.0, "stop": 0.5}), "ω range is empty")


def test_omega_outside_zero_two_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, lambda r: r["merge"].update(omegas=[0.5, 2.5]), "ω must be in [0, 2], got 2.5")


def test_duplicate_skill_names_are_refused(tmp_path: Path) -> None:
    _refused(
        tmp_path, lambda r: r["data"]["skills"][1].update(name="safety"), "two skills are named 'safety'"
    )


def test_caps_and_percentages_together_are_refused(tmp_path: Path) -> None:
    _refused(
        tmp_path,
        lambda r: r["data"]["skills"][0]["sizes"].update(percentages=[50]),
        "data.skills.0.sizes: give exactly one of caps",
    )


def test_bad_training_override_is_refused_naming_the_kind(tmp_path: Path) -> None:
    _refused(tmp_path, lambda r: r["training"].update(cft={"lr": -1}), "training.cft: lr: learning rate")


def test_multi_skill_needs_two_skills(tmp_path: Path) -> None:
    _refused(tmp_path, lambda r: r["data"]["skills"].pop(), "multi_skill needs at least two skills")


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda raw: raw.update(methods=["ptm", "magic"]), "magic"),
        (lambda raw: raw["models"].update(base="no-such-model"), "no-such-model"),
    ],
)
def test_invalid_spec_exits_2_under_dry_run_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Any, pattern: str
) -> None:
    from skillmerge.cli import run_cli

    raw = copy.deepcopy(RAW)
    edit(raw)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    code = run_cli(["run", str(spec), "--out", str(out), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and pattern in err
    assert not out.exists()
