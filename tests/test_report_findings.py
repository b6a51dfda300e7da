"""The six Merge-to-Learn findings on hand-written run directories (the runner's layout, no training).

One full run makes every finding hold (three skills, one measured by a differently named score); each test
then rewrites or removes a few steps to make one finding fail or come out ``None``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from skillmerge.report.findings import CLAIMS, findings_table, judged
from skillmerge.report.results import Results, collect

THETA_G = {"general": 50.0, "coding": 20.0, "safety": 30.0, "science": 40.0, "exaggerated_refusal": 10.0}
TA_PYTHON = "eval/ptm/task_arithmetic/python/cap20/seed0/w1"


class FakeRun:
    """Writes step directories as the runner does: ``steps/<id with '--'>.<key16>/manifest.json``."""

    def __init__(self, root: Path, skill_scores: dict[str, str] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True)
        (root / "run.json").write_text(json.dumps({"spec": "fake", "skill_scores": skill_scores or {}}))

    def folder(self, step_id: str) -> Path:
        return self.root / "steps" / f"{step_id.replace('/', '--')}.{'0' * 16}"

    def write(self, step_id: str, manifest: dict) -> None:
        folder = self.folder(step_id)
        folder.mkdir(parents=True, exist_ok=True)  # rewriting a step replaces its manifest
        (folder / "manifest.json").write_text(json.dumps({"id": step_id, "key": "0" * 64, **manifest}))

    def remove(self, step_id: str) -> None:
        shutil.rmtree(self.folder(step_id))

    def train(self, step_id: str, tokens: int) -> str:
        cost = {"optimizer_steps": 10, "tokens": tokens, "flops": float(tokens), "wall_seconds": 1.0}
        recipe = step_id.split("/")[1]
        self.write(
            step_id, {"kind": "train", "config": {"recipe": recipe}, "deps": [], "result": {"cost": cost}}
        )
        return step_id

    def eval(self, step_id: str, model: str | None, **scores: float) -> None:
        split = "validation" if step_id.startswith("eval-validation/") else "test"
        full = {key: scores.get(key) for key in THETA_G}
        self.write(
            step_id,
            {
                "kind": "eval",
                "config": {"split": split},
                "deps": [model] if model else [],
                "result": {"scores": full},
            },
        )

    def arm(self, method: str, skill: str, size: str, tokens: int, seed: int = 0, **scores: float) -> None:
        tag = f"{skill}/{size}/seed{seed}"
        self.eval(f"eval/{method}/{tag}", self.train(f"train/{method}/{tag}", tokens), **scores)

    def ptm(self, merge: str, skill: str, size: str, omega: float, seed: int = 0, **scores: float) -> None:
        theta_d = f"train/skill/{skill}/{size}/seed{seed}"
        merge_id = f"merge/ptm/{merge}/{skill}/{size}/seed{seed}/w{omega:g}"
        self.write(merge_id, {"kind": "merge", "config": {"omega": omega}, "deps": [theta_d], "seconds": 1.0})
        self.eval(merge_id.replace("merge/", "eval/", 1), merge_id, **scores)

    def multi(self, merge: str, skills: list[str], rule: str, **scores: float) -> None:
        merge_id = f"merge/multi/{merge}/{'+'.join(skills)}/{rule}"
        deps = [f"train/skill/{s}/cap20/seed0" for s in skills]
        self.write(merge_id, {"kind": "merge", "config": {}, "deps": deps, "seconds": 2.0})
        self.eval(merge_id.replace("merge/", "eval/", 1), merge_id, **scores)


@pytest.fixture
def full(tmp_path: Path) -> FakeRun:
    """Every finding holds; skill ``python`` is measured by the ``coding`` score (run.json says so)."""
    run = FakeRun(tmp_path / "run", {"python": "coding"})
    run.eval("eval/general", None, **THETA_G)
    er = {"exaggerated_refusal": 10.0}
    # python (coding), θ_G 20: CFT loses 20%, TA PTM 1%, PTM gains 19 of RT's 20, θ_D 2% of RT's tokens.
    run.arm("cft", "python", "cap10", 1_000, general=45.0, coding=30.0)
    run.arm("cft", "python", "cap20", 2_000, general=40.0, coding=38.0)
    run.arm("rt", "python", "cap10", 60_000, general=49.5, coding=30.0)
    run.arm("rt", "python", "cap20", 100_000, general=49.0, coding=40.0)
    run.train("train/skill/python/cap10/seed0", 1_200)
    run.train("train/skill/python/cap20/seed0", 2_000)
    run.ptm("task_arithmetic", "python", "cap10", 1.0, general=50.0, coding=28.0)
    run.ptm("task_arithmetic", "python", "cap20", 1.0, general=49.5, coding=39.0)
    run.ptm("task_arithmetic", "python", "cap20", 0.5, general=50.0, coding=30.0)
    # Matched with TA: linear ω1 (37 vs TA 39) is the best pair; linear ω0.5 (31 vs TA ω0.5's 30) is a lower
    # pair on which TA would lose (50 < 51 − 0.5); wise_ft ω0.5 (36) matches TA ω1 only.
    run.ptm("linear", "python", "cap20", 1.0, general=48.0, coding=37.0)
    run.ptm("linear", "python", "cap20", 0.5, general=51.0, coding=31.0)
    run.ptm("wise_ft", "python", "cap20", 0.5, general=47.0, coding=36.0)
    # A validation evaluation with huge scores: never used.
    run.eval(f"eval-validation/{TA_PYTHON.removeprefix('eval/')}", TA_PYTHON, general=99.0, coding=99.0)
    # safety, θ_G 30: CFT loses 12%, PTM 1.6%; PTM gains 60 of RT's 65; θ_D 4%; over-refusal +3.
    run.arm("cft", "safety", "cap20", 4_000, general=44.0, safety=90.0, **er)
    run.arm("rt", "safety", "cap20", 100_000, general=49.0, safety=95.0, **er)
    run.train("train/skill/safety/cap20/seed0", 4_000)
    run.ptm("task_arithmetic", "safety", "cap20", 1.0, general=49.2, safety=90.0, exaggerated_refusal=13.0)
    # science, θ_G 40: exactly on the F1 thresholds (CFT loses 10%, PTM 2%).
    run.arm("cft", "science", "cap20", 1_000, general=45.0, science=60.0)
    run.arm("rt", "science", "cap20", 50_000, general=48.0, science=60.0)
    run.train("train/skill/science/cap20/seed0", 1_000)
    run.ptm("task_arithmetic", "science", "cap20", 1.0, general=49.0, science=59.0)
    # All-skills merges (heuristic: python loses 6; validation: nobody loses ≥ 1) and the pair merges.
    every = ["python", "safety", "science"]
    run.multi("task_arithmetic", every, "heuristic", general=48.0, coding=33.0, safety=90.0, science=59.0)
    run.multi("task_arithmetic", every, "validation", general=48.0, coding=38.5, safety=90.0, science=59.0)
    run.multi("task_arithmetic", ["python", "safety"], "heuristic", general=48.0, coding=37.0, safety=90.0)
    run.multi("task_arithmetic", ["python", "science"], "heuristic", general=48.0, coding=38.0, science=58.0)
    run.multi("task_arithmetic", ["safety", "science"], "heuristic", general=48.0, safety=89.0, science=59.0)
    return run


def _findings(run: FakeRun, **kwargs: str | None) -> dict[str, dict]:
    return judged(collect(run.root), **kwargs)


# ------------------------------------------------------------------------------------------------ holds


def test_every_finding_holds_on_the_full_run_with_exact_numbers(full: FakeRun) -> None:
    results = collect(full.root)
    assert results.skill_scores == {"python": "coding", "safety": "safety", "science": "science"}
    f = judged(results)
    assert list(f) == ["F1", "F2", "F3", "F4", "F5", "F6"]
    assert {key: entry["holds"] for key, entry in f.items()} == dict.fromkeys(CLAIMS, True)
    assert all(f[key]["claim"] == CLAIMS[key] and "reason" not in f[key] for key in CLAIMS)

    f1 = f["F1"]
    assert f1["theta_G_general"] == 50.0
    assert f1["per_skill"]["python"] == {
        "theta_G_general": 50.0,
        "cft_id": "eval/cft/python/cap20/seed0",  # the best CFT by coding, not the cap10 one
        "cft_general": 40.0,
        "cft_loss": pytest.approx(0.2),
        "ptm_id": TA_PYTHON,
        "ptm_omega": 1.0,
        "ptm_general": 49.5,
        "ptm_loss": pytest.approx(0.01),
        # Of the TA rows with ≥ 90% of RT's gain (≥ 18 of 20), the least general loss: the same row here.
        "ptm_at_rt_gain": {
            "id": TA_PYTHON,
            "omega": 1.0,
            "skill": 39.0,
            "general": 49.5,
            "loss": pytest.approx(0.01),
        },
        "holds": True,
    }
    assert f1["per_skill"]["safety"]["cft_loss"] == pytest.approx(0.12)
    assert f1["per_skill"]["safety"]["ptm_loss"] == pytest.approx(0.016)
    assert f1["min_cft_loss"] == pytest.approx(0.10) and f1["max_ptm_loss"] == pytest.approx(0.02)

    f2 = f["F2"]["per_skill"]
    assert f2["python"] == {
        "score": "coding",
        "theta_G_skill": 20.0,
        "ptm_id": TA_PYTHON,
        "ptm_skill": 39.0,
        "rt_id": "eval/rt/python/cap20/seed0",
        "rt_skill": 40.0,
        "gain_ptm": 19.0,
        "gain_rt": 20.0,
        "ratio": pytest.approx(0.95),
        "holds": True,
    }
    assert f2["safety"]["gain_ptm"] == 60.0 and f2["safety"]["gain_rt"] == 65.0
    assert f["F2"]["min_ratio"] == pytest.approx(60 / 65)

    f3 = f["F3"]["per_skill"]
    assert list(f3["python"]) == ["cap10", "cap20"]
    assert f3["python"]["cap10"] == {
        "ptm_tokens": 1_200,
        "rt_tokens": 60_000,
        "ratio": pytest.approx(0.02),
        "holds": True,
    }
    assert f3["safety"]["cap20"]["ratio"] == pytest.approx(0.04)
    assert f3["science"]["cap20"]["ratio"] == pytest.approx(0.02)
    assert f["F3"]["max_ratio"] == pytest.approx(0.04)

    assert f["F4"] == {
        "holds": True,
        "claim": CLAIMS["F4"],
        "skill": "safety",
        "score": "safety",
        "ptm_id": "eval/ptm/task_arithmetic/safety/cap20/seed0/w1",
        "theta_G_safety": 30.0,
        "ptm_safety": 90.0,
        "rise": 60.0,
        "theta_G_exaggerated_refusal": 10.0,
        "ptm_exaggerated_refusal": 13.0,
        "exaggerated_refusal_change": 3.0,
    }

    f5 = f["F5"]
    assert [(m["merge"], m["rule"], m["interference"]) for m in f5["merges"]] == [
        ("task_arithmetic", "heuristic", True),
        ("task_arithmetic", "validation", False),
    ]
    heuristic = f5["merges"][0]["skills"]
    assert heuristic["python"] == {
        "score": "coding",
        "all_skills": 33.0,
        "single": 39.0,
        "single_id": TA_PYTHON,
        "delta": -6.0,
        "holds": True,
        "pairwise": {
            "python+safety": {"score": 37.0, "delta": -2.0},
            "python+science": {"score": 38.0, "delta": -1.0},
        },
    }
    assert heuristic["science"]["delta"] == 0.0 and heuristic["science"]["holds"] is False
    assert heuristic["science"]["pairwise"] == {
        "python+science": {"score": 58.0, "delta": -1.0},
        "safety+science": {"score": 59.0, "delta": 0.0},
    }
    validation = f5["merges"][1]["skills"]
    assert validation["python"]["delta"] == -0.5 and validation["python"]["pairwise"] == {}
    assert f5["largest_loss"] == {
        "skill": "python",
        "merge": "task_arithmetic",
        "rule": "heuristic",
        "delta": -6.0,
    }

    f6 = f["F6"]
    assert list(f6["per_skill"]) == ["python"]  # only python has linear / wise_ft rows
    assert f6["per_skill"]["python"]["linear"] == {
        "score": "coding",
        "ta_id": TA_PYTHON,
        "ta_skill": 39.0,
        "ta_general": 49.5,
        "other_id": "eval/ptm/linear/python/cap20/seed0/w1",
        "other_skill": 37.0,
        "other_general": 48.0,
        "general_margin": 1.5,
        "holds": True,
    }
    wise = f6["per_skill"]["python"]["wise_ft"]
    assert (wise["ta_id"], wise["other_general"], wise["general_margin"]) == (TA_PYTHON, 47.0, 2.5)
    assert f6["min_general_margin"] == 1.5


def test_findings_are_json_and_survive_the_results_round_trip(full: FakeRun) -> None:
    results = collect(full.root)
    f = judged(results)
    assert json.loads(json.dumps(f)) == f
    assert judged(Results.from_dict(results.to_dict())) == f


# ------------------------------------------------------------------------------------------------ fails


@pytest.mark.parametrize(
    ("step", "general", "skill", "field", "value"),
    [
        ("eval/cft/science/cap20/seed0", 46.0, "science", "cft_loss", 0.08),  # CFT loses only 8%
        ("eval/ptm/task_arithmetic/safety/cap20/seed0/w1", 48.9, "safety", "ptm_loss", 0.022),  # PTM 2.2%
    ],
)
def test_f1_fails_when_one_skill_breaks_a_threshold(
    full: FakeRun, step: str, general: float, skill: str, field: str, value: float
) -> None:
    model = step.replace("eval/", "merge/" if "/ptm/" in step else "train/", 1)
    full.eval(step, model, general=general, exaggerated_refusal=10.0, **{skill: 90.0})
    f1 = _findings(full)["F1"]
    assert f1["holds"] is False and "reason" not in f1
    assert f1["per_skill"][skill][field] == pytest.approx(value)
    assert f1["per_skill"][skill]["holds"] is False
    assert f1["per_skill"]["python"]["holds"] is True


def test_f2_fails_when_rt_gains_much_more_than_ptm(full: FakeRun) -> None:
    full.eval("eval/rt/python/cap20/seed0", "train/rt/python/cap20/seed0", general=49.0, coding=45.0)
    f2 = _findings(full)["F2"]
    assert f2["holds"] is False
    assert f2["per_skill"]["python"]["gain_rt"] == 25.0
    assert f2["per_skill"]["python"]["ratio"] == pytest.approx(19 / 25)
    assert f2["min_ratio"] == pytest.approx(0.76)


def test_f3_fails_on_the_seed_mean_of_theta_d_tokens(full: FakeRun) -> None:
    # Seed 1: θ_D 8000 tokens, RT 100000: the means are 6000 / 100000 = 6%.
    full.train("train/skill/safety/cap20/seed1", 8_000)
    full.ptm("task_arithmetic", "safety", "cap20", 1.0, seed=1, general=49.0, safety=88.0)
    full.arm("rt", "safety", "cap20", 100_000, seed=1, general=49.0, safety=94.0)
    f3 = _findings(full)["F3"]
    assert f3["holds"] is False
    assert f3["per_skill"]["safety"]["cap20"] == {
        "ptm_tokens": 6_000,
        "rt_tokens": 100_000,
        "ratio": pytest.approx(0.06),
        "holds": False,
    }
    assert f3["max_ratio"] == pytest.approx(0.06)


@pytest.mark.parametrize(
    ("safety", "over_refusal", "holds", "rise", "change"),
    [
        (90.0, 16.0, False, 60.0, 6.0),  # look-alike prompts refused 6 points more often
        (90.0, 5.0, True, 60.0, -5.0),  # exactly 5 points: still within
        (25.0, 10.0, False, -5.0, 0.0),  # refuses harmful prompts less than θ_G
    ],
)
def test_f4_needs_a_rise_and_over_refusal_within_five_points(
    full: FakeRun, safety: float, over_refusal: float, holds: bool, rise: float, change: float
) -> None:
    step = "eval/ptm/task_arithmetic/safety/cap20/seed0/w1"
    model = step.replace("eval/", "merge/", 1)
    full.eval(step, model, general=49.2, safety=safety, exaggerated_refusal=over_refusal)
    f4 = _findings(full)["F4"]
    assert (f4["holds"], f4["rise"], f4["exaggerated_refusal_change"]) == (holds, rise, change)


def test_f5_fails_when_no_skill_loses_a_point(full: FakeRun) -> None:
    every = ["python", "safety", "science"]
    full.multi("task_arithmetic", every, "heuristic", general=48.0, coding=38.5, safety=90.0, science=59.0)
    f5 = _findings(full)["F5"]
    assert f5["holds"] is False
    assert [m["interference"] for m in f5["merges"]] == [False, False]
    assert f5["largest_loss"] == {
        "skill": "python",
        "merge": "task_arithmetic",
        "rule": "heuristic",
        "delta": -0.5,
    }


@pytest.mark.parametrize(("linear_general", "holds", "margin"), [(50.5, False, -1.0), (50.0, True, -0.5)])
def test_f6_compares_general_on_the_best_matched_pair(
    full: FakeRun, linear_general: float, holds: bool, margin: float
) -> None:
    step = "eval/ptm/linear/python/cap20/seed0/w1"
    full.eval(step, step.replace("eval/", "merge/", 1), general=linear_general, coding=37.0)
    f6 = _findings(full)["F6"]
    assert f6["holds"] is holds
    assert f6["per_skill"]["python"]["linear"]["general_margin"] == pytest.approx(margin)
    assert f6["per_skill"]["python"]["wise_ft"]["holds"] is True
    assert f6["min_general_margin"] == pytest.approx(margin)


def test_f1_reports_where_the_trade_off_sits_without_changing_its_verdict(full: FakeRun) -> None:
    step = "eval/ptm/task_arithmetic/python/cap20/seed0/w0.5"  # now 18.5 of RT's 20 points, general kept
    full.eval(step, step.replace("eval/", "merge/", 1), general=50.0, coding=38.5)
    f = _findings(full)
    near = f["F1"]["per_skill"]["python"]["ptm_at_rt_gain"]
    assert (near["id"], near["omega"], near["loss"]) == (step, 0.5, 0.0)
    assert f["F1"]["per_skill"]["python"]["ptm_id"] == TA_PYTHON  # the verdict still uses the best-skill row
    assert "(PTM at ω 0.5, with ≥ 90% of RT's skill gain, loses 0.0%)" in findings_table(f)


# ------------------------------------------------------------------------------------------------- None


def test_a_run_with_only_theta_g_and_one_ptm_skill_judges_nothing(tmp_path: Path) -> None:
    run = FakeRun(tmp_path / "run", {"python": "coding"})
    run.eval("eval/general", None, **THETA_G)
    run.train("train/skill/python/cap20/seed0", 2_000)
    run.ptm("task_arithmetic", "python", "cap20", 1.0, general=49.5, coding=39.0)
    f = _findings(run)
    assert {key: entry["holds"] for key, entry in f.items()} == dict.fromkeys(CLAIMS, None)
    assert f["F1"]["reason"] == "python (no CFT row)"
    assert f["F1"]["per_skill"]["python"]["ptm_loss"] == pytest.approx(0.01)  # what it could compute
    assert f["F2"]["reason"] == "python (no RT row)"
    assert f["F3"]["reason"] == "python (no RT row with a cost)"
    assert f["F4"]["reason"] == "no 'safety' skill in the run"
    assert f["F5"]["reason"] == "fewer than two skills in the run"
    assert f["F6"]["reason"] == "no linear or wise_ft PTM rows in the run"


def test_without_theta_g_every_finding_is_none(full: FakeRun) -> None:
    full.remove("eval/general")
    f = _findings(full)
    assert f == {
        key: {"holds": None, "claim": CLAIMS[key], "reason": "no θ_G (general) test evaluation in the run"}
        for key in CLAIMS
    }


def test_an_unjudged_skill_makes_f1_none_unless_another_skill_fails(full: FakeRun) -> None:
    full.remove("eval/cft/science/cap20/seed0")
    f1 = _findings(full)["F1"]
    assert f1["holds"] is None and f1["reason"] == "science (no CFT row)"
    assert f1["min_cft_loss"] == pytest.approx(0.12)  # over the judged skills only
    full.eval("eval/cft/python/cap20/seed0", "train/cft/python/cap20/seed0", general=46.0, coding=38.0)
    f1 = _findings(full)["F1"]
    assert f1["holds"] is False and "reason" not in f1


def test_f2_ratio_is_undefined_when_rt_does_not_improve(full: FakeRun) -> None:
    full.eval("eval/rt/science/cap20/seed0", "train/rt/science/cap20/seed0", general=48.0, science=40.0)
    f2 = _findings(full)["F2"]
    science = f2["per_skill"]["science"]
    assert (science["gain_rt"], science["ratio"], science["holds"]) == (0.0, None, None)
    assert f2["holds"] is None and f2["reason"] == "science (RT does not improve on θ_G)"
    assert f2["min_ratio"] == pytest.approx(60 / 65)


def test_f4_is_none_without_the_safety_skill(full: FakeRun) -> None:
    assert _findings(full, safety_skill=None)["F4"]["reason"] == "no safety skill named"
    # Any skill can play the role; python's PTM rows report no exaggerated_refusal score.
    f4 = _findings(full, safety_skill="python")["F4"]
    assert (f4["holds"], f4["score"], f4["rise"], f4["ptm_id"]) == (None, "coding", 19.0, TA_PYTHON)
    assert f4["reason"] == "no exaggerated_refusal score for θ_G or the PTM row"
    assert _findings(full, safety_skill="chemistry")["F4"]["reason"] == "no 'chemistry' skill in the run"


def test_f5_is_none_with_pair_merges_but_no_all_skills_merge(full: FakeRun) -> None:
    full.remove("eval/multi/task_arithmetic/python+safety+science/heuristic")
    full.remove("eval/multi/task_arithmetic/python+safety+science/validation")
    f5 = _findings(full)["F5"]
    assert f5 == {"holds": None, "claim": CLAIMS["F5"], "reason": "no all-skills merge in the run"}


def test_f6_is_none_when_no_linear_or_wise_ft_row_is_within_five_points(full: FakeRun) -> None:
    for merge, omega, coding in (("linear", 1.0, 20.0), ("linear", 0.5, 21.0), ("wise_ft", 0.5, 10.0)):
        step = f"eval/ptm/{merge}/python/cap20/seed0/w{omega:g}"
        full.eval(step, step.replace("eval/", "merge/", 1), general=48.0, coding=coding)
    f6 = _findings(full)["F6"]
    assert f6["holds"] is None
    assert f6["reason"] == "no task_arithmetic row within 5 points of a linear or wise_ft row"
    assert f6["per_skill"]["python"] == {
        "linear": {"holds": None, "reason": "no pair within 5 points"},
        "wise_ft": {"holds": None, "reason": "no pair within 5 points"},
    }


def test_f6_interpolates_on_the_other_omega_curve_when_no_pair_is_within_five_points(full: FakeRun) -> None:
    # linear's curve: ω 0.5 → (skill 20, general 52), ω 1 → (50, 40); TA ω 1 (39, 49.5) lies between.
    for omega, coding, general in ((1.0, 50.0, 40.0), (0.5, 20.0, 52.0)):
        step = f"eval/ptm/linear/python/cap20/seed0/w{omega:g}"
        full.eval(step, step.replace("eval/", "merge/", 1), general=general, coding=coding)
    linear = _findings(full)["F6"]["per_skill"]["python"]["linear"]
    assert linear["interpolated"] is True and linear["ta_id"] == TA_PYTHON
    assert linear["other_general"] == pytest.approx(52.0 - 12.0 * 19.0 / 30.0)
    assert linear["general_margin"] == pytest.approx(49.5 - (52.0 - 12.0 * 19.0 / 30.0))
    assert linear["holds"] is True


def test_f6_is_unknown_when_one_method_cannot_be_compared_and_the_other_holds(full: FakeRun) -> None:
    step = "eval/ptm/wise_ft/python/cap20/seed0/w0.5"  # one point, 26 below every TA row: no pair, no curve
    full.eval(step, step.replace("eval/", "merge/", 1), general=47.0, coding=2.0)
    f6 = _findings(full)["F6"]
    assert f6["per_skill"]["python"]["linear"]["holds"] is True
    assert f6["per_skill"]["python"]["wise_ft"] == {"holds": None, "reason": "no pair within 5 points"}
    assert f6["holds"] is None


# ------------------------------------------------------------------------------------------------ table


def test_findings_table_has_one_row_per_finding(full: FakeRun) -> None:
    full.eval("eval/rt/python/cap20/seed0", "train/rt/python/cap20/seed0", general=49.0, coding=45.0)
    f = _findings(full, safety_skill=None)
    lines = findings_table(f).splitlines()
    assert lines[:4] == [
        "### Findings",
        "",
        "| Finding | Claim | Holds | Key numbers | 95% interval |",
        "|---|---|---|---|---|",
    ]
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines[4:10]}
    assert list(rows) == list(CLAIMS)
    assert rows["F1"] == (
        f"| F1 | {CLAIMS['F1']} | yes | python: CFT loses 20.0%, PTM (ω 1) loses 1.0%; "
        "safety: CFT loses 12.0%, PTM (ω 1) loses 1.6%; science: CFT loses 10.0%, PTM (ω 1) loses 2.0% | — |"
    )
    assert rows["F2"] == (
        f"| F2 | {CLAIMS['F2']} | no | python: PTM gain +19.0 vs RT +25.0 (ratio 0.76); "
        "safety: PTM gain +60.0 vs RT +65.0 (ratio 0.92); science: PTM gain +19.0 vs RT +20.0 (ratio 0.95)"
        " | — |"
    )
    assert rows["F3"] == (
        f"| F3 | {CLAIMS['F3']} | yes | python cap10: 1,200 / 60,000 tokens (0.020); "
        "python cap20: 2,000 / 100,000 tokens (0.020); safety cap20: 4,000 / 100,000 tokens (0.040); "
        "science cap20: 1,000 / 50,000 tokens (0.020) | — |"
    )
    assert rows["F4"] == f"| F4 | {CLAIMS['F4']} | n.a. | n.a.: no safety skill named | — |"
    assert rows["F5"] == (
        f"| F5 | {CLAIMS['F5']} | yes | task_arithmetic (heuristic): python 33.0 vs 39.0 alone (-6.0), "
        "safety 90.0 vs 90.0 alone (+0.0), science 59.0 vs 59.0 alone (+0.0); "
        "task_arithmetic (validation): python 38.5 vs 39.0 alone (-0.5), "
        "safety 90.0 vs 90.0 alone (+0.0), science 59.0 vs 59.0 alone (+0.0) | — |"
    )
    assert rows["F6"] == (
        f"| F6 | {CLAIMS['F6']} | yes | python vs linear: general 49.5 vs 48.0 (skill 39.0 vs 37.0); "
        "python vs wise_ft: general 49.5 vs 47.0 (skill 39.0 vs 36.0) | — |"
    )
    safety_row = findings_table(_findings(full))
    assert "| safety: safety 30.0 → 90.0 (+60.0); exaggerated refusal 10.0 → 13.0 (+3.0) |" in safety_row


def test_findings_module_does_not_import_torch() -> None:
    code = (
        "import sys, skillmerge.report.findings; "
        "sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_wise_ft_rows_are_not_the_best_ptm_in_f2_and_f4(full: FakeRun) -> None:
    # A WiSE-FT row (built from the CFT model) with the top skill score must not stand in for PTM.
    before = _findings(full)
    full.ptm("wise_ft", "safety", "cap20", 1.0, general=10.0, safety=99.0, exaggerated_refusal=0.0)
    after = _findings(full)
    assert after["F2"]["per_skill"]["safety"]["ptm_id"] == before["F2"]["per_skill"]["safety"]["ptm_id"]
    assert "wise_ft" not in after["F2"]["per_skill"]["safety"]["ptm_id"]
    assert after["F4"]["ptm_id"] == before["F4"]["ptm_id"]


def test_a_new_finding_is_one_registered_unit(full: FakeRun) -> None:
    from skillmerge.report.findings import FINDINGS, Finding, register_finding, unregister_finding

    def judge(view: Any) -> dict[str, Any]:
        g = view.general.score("general")
        return {"holds": g >= 40.0, "claim": "θ_G keeps 40 general points", "theta_G_general": g}

    toy = Finding(
        "F7",
        "theta_g_keeps_40",
        "θ_G keeps 40 general points",
        judge,
        lambda f: [f"θ_G general {f['theta_G_general']:.1f}"],
    )
    register_finding(toy)
    try:
        f = _findings(full)
        assert list(f) == ["F1", "F2", "F3", "F4", "F5", "F6", "F7"]
        assert f["F7"] == {"holds": True, "claim": "θ_G keeps 40 general points", "theta_G_general": 50.0}
        assert "| F7 | θ_G keeps 40 general points | yes | θ_G general 50.0 |" in findings_table(f)
        assert CLAIMS["F7"] == "θ_G keeps 40 general points"
        with pytest.raises(ValueError, match="'F7' is registered twice"):
            register_finding(Finding("F7", "another", "another", judge, lambda f: []))
    finally:
        unregister_finding("F7")
    assert "F7" not in FINDINGS and "F7" not in CLAIMS
    assert [f.name for f in FINDINGS.values()] == [
        "cft_forgets_ptm_keeps",
        "ptm_matches_rt_gain",
        "ptm_costs_a_fraction_of_rt",
        "safety_merge_keeps_compliance",
        "skills_interfere",
        "task_arithmetic_keeps_general_best",
    ]
    assert list(_findings(full)) == ["F1", "F2", "F3", "F4", "F5", "F6"]
