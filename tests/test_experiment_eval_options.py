"""Per-suite eval options in an experiment spec (``eval.options``) and the reuse of the CFT model as θ_D
(``same_as``) when θ_base is θ_G: validation, path resolution, cache keys, and a real tiny run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from conftest import make_chat_records
from model_factory import PLAN_CONFIG
from skillmerge.data.records import ChatRecord, Message, write_jsonl
from skillmerge.errors import UsageError
from skillmerge.experiment.dag import expand
from skillmerge.experiment.inputs import fingerprint_input
from skillmerge.experiment.runner import run_experiment
from skillmerge.experiment.spec import load_spec
from skillmerge.experiment.status import step_dir
from skillmerge.experiment.step import Step, step_key


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """One torch thread for each test here (restored after it: a module-level call leaked into the rest of
    the session and ran every later test, the reduced demo included, on one of the two cores)."""


TINY = PLAN_CONFIG
CFT = "train/cft/safety/cap2/seed0"
SKILL = "train/skill/safety/cap2/seed0"


def _fake_model(path: Path, value: float, size: int = 2) -> str:
    """A model directory the DAG can fingerprint (config + safetensors); its weights are all ``value``."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(TINY))
    save_file({"w": torch.full((size,), value)}, str(path / "model.safetensors"))
    return str(path)


def _chat(n: int, tag: str) -> list[ChatRecord]:
    return [
        ChatRecord(
            (Message("user", f"{tag} question {i}"), Message("assistant", f"{tag} answer {i}.")), id=f"{i}"
        )
        for i in range(n)
    ]


def _inputs(root: Path) -> None:
    """Data files and two different fake models under ``root`` (what :func:`_spec` names)."""
    (root / "data").mkdir()
    write_jsonl(root / "data" / "general.jsonl", _chat(6, "general"))
    write_jsonl(root / "data" / "safety.jsonl", _chat(4, "safety"))
    write_jsonl(root / "data" / "safety-val.jsonl", _chat(2, "safety-val"))
    (root / "held").mkdir()
    write_jsonl(root / "held" / "general.jsonl", _chat(3, "held"))
    (root / "dna").mkdir()
    (root / "dna" / "a.csv").write_text("id,question\n1,how\n")
    _fake_model(root / "models" / "base", 0.0)
    _fake_model(root / "models" / "other", 1.0, size=3)
    _fake_model(root / "models" / "same-shape", 1.0)  # other weights, same names, shapes and dtypes


def _spec(root: Path, options: dict[str, Any] | None = None, **top: Any) -> Path:
    """A spec in ``root``: θ_G = θ_base (both ``models/base``) unless ``top`` says otherwise."""
    spec: dict[str, Any] = {
        "name": "options",
        "seeds": [0],
        "models": {"base": "models/base", "general": "models/base"},
        "data": {
            "general": ["data/general.jsonl"],
            "skills": [
                {
                    "name": "safety",
                    "train": ["data/safety.jsonl"],
                    "validation": ["data/safety-val.jsonl"],
                    "sizes": {"caps": [2]},
                    "score": "safety",
                }
            ],
        },
        "methods": ["cft", "ptm"],
        "merge": {"methods": ["task_arithmetic"], "omegas": [0.5, 1.0]},
        "selection": {"rules": ["heuristic", "validation"]},
        "training": {"default": {"max_steps": 2}},
        "eval": {"limit": 4, "general": ["perplexity"], "safety": ["safety"]},
        **top,
    }
    if options is not None:
        spec["eval"]["options"] = options
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


PPL = {"perplexity": {"path": "held/general.jsonl"}}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _inputs(tmp_path)
    return tmp_path


def _steps(spec_path: Path) -> dict[str, Step]:
    return {s.id: s for s in expand(load_spec(spec_path))}


def _keys(spec_path: Path) -> dict[str, str]:
    return {i: s.key for i, s in _steps(spec_path).items()}


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("suite", ["xstest", "coding", "no-such-suite"])
def test_options_of_a_suite_not_under_eval_are_refused(root: Path, suite: str) -> None:
    with pytest.raises(UsageError, match=rf"eval\.options: suite '{suite}' is not evaluated"):
        load_spec(_spec(root, {**PPL, suite: {"max_new_tokens": 8}}))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({**PPL, "safety": {"bogus": 1}}, r"eval\.options\.safety: unknown option 'bogus'"),
        ({**PPL, "safety": {"max_new_tokens": 8, "maxnewtokens": 8}}, r"unknown option 'maxnewtokens'"),
        ({"perplexity": {"path": "held/general.jsonl", "limt": 3}}, r"perplexity: unknown option 'limt'"),
        ({"perplexity": {"self": 1}}, r"eval\.options\.perplexity: unknown option 'self'"),
    ],
)
def test_unknown_option_names_are_refused_naming_them(root: Path, options: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_spec(_spec(root, options))


def test_known_options_load_and_paths_are_resolved_against_the_spec_file(
    root: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    absolute = str(root / "held" / "general.jsonl")
    options = {
        "perplexity": {"path": ["held/general.jsonl", absolute]},
        "safety": {"max_new_tokens": 48, "paths": {"donotanswer": "dna"}},
    }
    spec_path = _spec(root, options)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # the working directory plays no part
    spec = load_spec(spec_path)
    assert spec.eval_options == {
        "perplexity": {"path": [absolute, absolute]},
        "safety": {"max_new_tokens": 48, "paths": {"donotanswer": str(root / "dna")}},
    }
    assert "options" not in spec.eval and "limit" not in spec.eval
    assert spec.option_paths(["perplexity", "safety"]) == {
        "eval.options.perplexity.path.0": absolute,
        "eval.options.perplexity.path.1": absolute,
        "eval.options.safety.paths.donotanswer": str(root / "dna"),
    }
    assert spec.option_paths(["perplexity"]).keys() == {
        "eval.options.perplexity.path.0",
        "eval.options.perplexity.path.1",
    }


def test_a_missing_option_file_is_refused_naming_the_option(root: Path) -> None:
    spec = load_spec(_spec(root, {"perplexity": {"path": "held/nowhere.jsonl"}}))
    with pytest.raises(UsageError, match=r"eval\.options\.perplexity\.path: .*nowhere\.jsonl does not exist"):
        expand(spec)


# ------------------------------------------------------------------------------------------ cache keys


def test_an_option_file_is_fingerprinted_into_every_eval_key_and_no_other(root: Path) -> None:
    spec_path = _spec(root, PPL)
    steps = _steps(spec_path)
    held = str(root / "held" / "general.jsonl")
    evals = {i for i, s in steps.items() if s.kind == "eval"}
    assert {i for i in evals if i.startswith("eval-validation/")} >= {"eval-validation/general"}
    for step_id in evals:  # every eval step runs perplexity: the test ones and the validation ones
        ref = steps[step_id].inputs["eval.options.perplexity.path"]
        assert ref == fingerprint_input(held, "x")
        assert steps[step_id].config.record()["options"] == {
            "perplexity": {"path": "@input:eval.options.perplexity.path"}
        }
    for step in steps.values():
        if step.kind != "eval":
            assert not any(role.startswith("eval.options") for role in step.inputs), step.id
            assert "options" not in step.config.record()

    before = _keys(spec_path)
    write_jsonl(root / "held" / "general.jsonl", _chat(3, "edited"), overwrite=True)
    after = _keys(spec_path)
    assert {i for i in before if before[i] != after[i]} == evals


def test_moving_the_project_keeps_every_key(root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # The DAG's contract (skillmerge.experiment.dag): paths are not part of a key, contents are. Data files
    # and models keep their keys when the project moves; option files must too.
    options = {**PPL, "safety": {"max_new_tokens": 48, "paths": {"donotanswer": "dna"}}}
    before = _keys(_spec(root, options))
    moved = tmp_path_factory.mktemp("moved") / "project"
    shutil.copytree(root, moved)
    after = _keys(moved / "spec.yaml")
    assert {i for i in before if before[i] != after[i]} == set()


def test_a_folder_option_is_fingerprinted_by_its_files(root: Path) -> None:
    spec_path = _spec(root, {**PPL, "safety": {"paths": {"donotanswer": "dna"}}})
    steps = _steps(spec_path)
    test_evals = {i for i, s in steps.items() if s.kind == "eval" and s.config.record()["split"] == "test"}
    role = "eval.options.safety.paths.donotanswer"
    assert {i for i, s in steps.items() if role in s.inputs} == test_evals  # validation runs no safety
    before = _keys(spec_path)
    (root / "dna" / "a.csv").write_text("id,question\n1,how now\n")
    edited = _keys(spec_path)
    assert {i for i in before if before[i] != edited[i]} == test_evals
    (root / "dna" / "b.csv").write_text("id,question\n2,why\n")
    added = _keys(spec_path)
    assert {i for i in edited if edited[i] != added[i]} == test_evals


def test_without_options_eval_keys_are_computed_as_before_options_existed(root: Path) -> None:
    spec_path = _spec(root, options=None, eval={"limit": 4, "general": ["xstest"], "safety": ["safety"]})
    steps = _steps(spec_path)
    evals = [s for s in steps.values() if s.kind == "eval"]
    assert len(evals) == 1 + 1 + 2 + 1 + 2  # θ_G, CFT, 2 merges; validation of θ_G and of the 2 merges
    for step in evals:
        assert "options" not in step.config.record()
        assert set(step.config.record()) <= {"split", "suites", "limit", "skill"}
        assert not any(role.startswith("eval.options") for role in step.inputs)
        inputs = {role: ref.fingerprint for role, ref in step.inputs.items()}
        deps = {d: steps[d].key for d in step.deps}
        assert step.key == step_key("eval", step.config.record(), inputs, deps)


def test_a_value_option_changes_only_the_keys_of_steps_running_its_suite(root: Path) -> None:
    plain = _steps(_spec(root, PPL))
    tuned = _steps(_spec(root, {**PPL, "safety": {"max_new_tokens": 48}}))
    changed = {i for i in plain if plain[i].key != tuned[i].key}
    assert changed == {
        i for i, s in plain.items() if s.kind == "eval" and "safety" in s.config.record()["suites"]
    }
    assert all(i.startswith("eval/") for i in changed) and changed
    assert tuned["eval/general"].config.record()["options"] == {
        "perplexity": {"path": "@input:eval.options.perplexity.path"},
        "safety": {"max_new_tokens": 48},
    }
    assert "safety" not in tuned["eval-validation/general"].config.record()["options"]


# ------------------------------------------------------------------------------------------- same_as


def test_skill_step_reuses_cft_when_base_is_general_and_recipes_match(root: Path) -> None:
    steps = _steps(_spec(root, PPL))
    assert steps[SKILL].config.record()["same_as"] == CFT
    assert CFT in steps[SKILL].deps
    assert "same_as" not in steps[CFT].config.record()
    # A byte copy without a recorded weights fingerprint: only the header fingerprint is known, which sees
    # shapes and not values, so equality is not proven and θ_D is trained from θ_base.
    copy = root / "models" / "copy"
    copy.mkdir()
    for file in (root / "models" / "base").iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    copied = _steps(_spec(root, PPL, models={"base": "models/base", "general": "models/copy"}))
    assert "same_as" not in copied[SKILL].config.record()
    # With equal recorded fingerprints (a skillmerge manifest in both), the copy is the same model.
    for folder in (root / "models" / "base", copy):
        (folder / "manifest.json").write_text(json.dumps({"weights_fingerprint": "sha256:" + "ab" * 32}))
    copied = _steps(_spec(root, PPL, models={"base": "models/base", "general": "models/copy"}))
    assert copied[SKILL].config.record()["same_as"] == CFT


@pytest.mark.parametrize(
    "change",
    [
        {"training": {"default": {"max_steps": 2}, "skill": {"lr": 5.0e-5}}},
        {"training": {"default": {"max_steps": 2}, "cft": {"max_steps": 3}}},
        {"models": {"base": "models/base", "general": "models/other"}},
        {"models": {"base": "models/base", "general": None}},
        {"methods": ["ptm"]},
    ],
    ids=["skill-lr", "cft-steps", "other-general", "trained-general", "no-cft"],
)
def test_no_reuse_unless_base_is_general_and_recipes_are_equal(root: Path, change: dict[str, Any]) -> None:
    steps = _steps(_spec(root, PPL, **change))
    assert "same_as" not in steps[SKILL].config.record()
    assert not any(d.startswith("train/cft") for d in steps[SKILL].deps)
    reused = _steps(_spec(root, PPL))
    assert reused[SKILL].key != steps[SKILL].key


def test_no_reuse_for_another_model_of_the_same_shape(root: Path) -> None:
    # θ_G differs from θ_base in its weights only (a finetune saved without a skillmerge manifest, e.g. a
    # hub download): θ_D must be trained from θ_base, not linked from the CFT model trained from θ_G.
    steps = _steps(_spec(root, PPL, models={"base": "models/base", "general": "models/same-shape"}))
    assert "same_as" not in steps[SKILL].config.record()


def test_every_seed_reuses_its_own_cft_model(root: Path) -> None:
    steps = _steps(_spec(root, PPL, seeds=[0, 1]))
    for seed in (0, 1):
        assert (
            steps[f"train/skill/safety/cap2/seed{seed}"].config.record()["same_as"]
            == f"train/cft/safety/cap2/seed{seed}"
        )


# ------------------------------------------------------------------------------------------ a real run


def _tiny_run_spec(root: Path, model: Path, suite: str) -> Path:
    data = root / "data"
    data.mkdir()
    write_jsonl(data / "general.jsonl", make_chat_records(16, seed=1))
    write_jsonl(data / "skill.jsonl", _chat(16, "echo"))
    write_jsonl(data / "held.jsonl", make_chat_records(6, seed=2))
    spec = {
        "name": "reuse",
        "models": {"base": str(model), "general": str(model)},
        "data": {
            "general": ["data/general.jsonl"],
            "skills": [
                {"name": "echo", "train": ["data/skill.jsonl"], "sizes": {"caps": [8]}, "score": "general"}
            ],
        },
        "methods": ["cft", "ptm"],
        "merge": {"methods": ["task_arithmetic"], "omegas": [0.5, 1.0]},
        "selection": {"rules": ["heuristic"]},
        "training": {"default": {"max_steps": 2, "batch_size": 4, "data": {"max_len": 64}}},
        "eval": {"general": [suite], "options": {suite: {"path": "data/held.jsonl"}}},
    }
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    return tensors


def test_tiny_run_links_the_cft_model_as_theta_d_and_merges_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    spec_path = _tiny_run_spec(tmp_path, tiny_model_dir, "perplexity")
    run_dir = tmp_path / "run"
    summary = run_experiment(spec_path, run_dir, eval_limit=3, echo=lambda _line: None)
    assert summary.ok and summary.count("ran") == len(summary.outcomes) == 10
    steps = {s.id: s for s in expand(load_spec(spec_path), 3)}
    cft_dir = step_dir(run_dir, steps["train/cft/echo/cap8/seed0"])
    skill_dir = step_dir(run_dir, steps["train/skill/echo/cap8/seed0"])

    cft_files = sorted(
        p.relative_to(cft_dir / "model") for p in (cft_dir / "model").rglob("*") if p.is_file()
    )
    skill_files = sorted(
        p.relative_to(skill_dir / "model") for p in (skill_dir / "model").rglob("*") if p.is_file()
    )
    assert skill_files == cft_files and any(p.suffix == ".safetensors" for p in cft_files)
    for rel in cft_files:
        assert os.stat(skill_dir / "model" / rel).st_ino == os.stat(cft_dir / "model" / rel).st_ino, rel
        assert os.stat(cft_dir / "model" / rel).st_nlink >= 2

    skill_manifest = json.loads((skill_dir / "manifest.json").read_text())
    cft_manifest = json.loads((cft_dir / "manifest.json").read_text())
    assert skill_manifest["result"]["same_as"] == "train/cft/echo/cap8/seed0"
    assert skill_manifest["config"]["same_as"] == "train/cft/echo/cap8/seed0"
    assert skill_manifest["result"]["final_loss"] == cft_manifest["result"]["final_loss"]

    # θ_base = θ_G, so the PTM model at ω is θ_G + ω·(θ_CFT − θ_G).
    general = _weights(tiny_model_dir)
    tuned = _weights(cft_dir / "model")
    assert any(not torch.equal(general[k], tuned[k]) for k in tuned)  # training moved the weights
    for omega in (0.5, 1.0):
        merged_dir = (
            step_dir(run_dir, steps[f"merge/ptm/task_arithmetic/echo/cap8/seed0/w{omega:g}"]) / "model"
        )
        assert (merged_dir / "config.json").is_file()
        merged = _weights(merged_dir)
        assert merged.keys() == tuned.keys()
        for name, value in merged.items():
            expected = general[name].float() + omega * (tuned[name].float() - general[name].float())
            torch.testing.assert_close(value.float(), expected, rtol=0, atol=1e-5)

    # The perplexity score counts towards General (the spec's eval map), on the option's file.
    result = json.loads((step_dir(run_dir, steps["eval/general"]) / "manifest.json").read_text())["result"]
    summary_file = step_dir(run_dir, steps["eval/general"]) / "eval" / "perplexity" / "summary.json"
    ppl = json.loads(summary_file.read_text())
    assert result["scores"]["general"] == pytest.approx(100 * ppl["metrics"]["score"])
    assert len((summary_file.parent / "items.jsonl").read_text().splitlines()) == 3


def test_chat_suite_reads_its_file_from_eval_options(tmp_path: Path, tiny_model_dir: Path) -> None:
    spec_path = _tiny_run_spec(tmp_path, tiny_model_dir, "chat")
    summary = run_experiment(
        spec_path, tmp_path / "run", eval_limit=2, only="eval/general", echo=lambda _: None
    )
    assert [o.id for o in summary.outcomes] == ["eval/general"]
    outcome = summary.outcomes[0]
    assert outcome.outcome == "ran", outcome.error
    items = (tmp_path / "run").glob("steps/eval--general.*/eval/chat/items.jsonl")
    assert [len(p.read_text().splitlines()) for p in items] == [2]


def test_wise_ft_interpolates_towards_the_cft_model(root: Path) -> None:
    merge = {"methods": ["task_arithmetic", "wise_ft", "linear"], "omegas": [0.5]}
    models = {"base": "models/base", "general": "models/other"}
    steps = _steps(_spec(root, PPL, merge=merge, models=models))
    assert steps["merge/ptm/wise_ft/safety/cap2/seed0/w0.5"].deps[-1] == CFT
    assert steps["merge/ptm/task_arithmetic/safety/cap2/seed0/w0.5"].deps[-1] == SKILL
    assert steps["merge/ptm/linear/safety/cap2/seed0/w0.5"].deps[-1] == SKILL
    formula = steps["merge/ptm/wise_ft/safety/cap2/seed0/w0.5"].config.record()["formula"]
    assert formula == "theta_G + omega * (theta_CFT - theta_G)"


def test_wise_ft_without_cft_is_refused(root: Path) -> None:
    merge = {"methods": ["wise_ft"], "omegas": [0.5]}
    with pytest.raises(UsageError, match="wise_ft interpolates θ_G towards the CFT model"):
        load_spec(_spec(root, PPL, merge=merge, methods=["ptm"]))
