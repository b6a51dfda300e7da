"""Runner paths beyond RT/CFT/PTM: a given θ_G, CFT+replay, multi-skill merges (heuristic ω and validation
pick), and merge/eval steps in two worker processes giving the same steps and outcomes as one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import make_chat_records
from skillmerge.data.records import ChatRecord, Message, write_jsonl
from skillmerge.experiment.runner import RunSummary, run_experiment
from skillmerge.experiment.status import STEPS_DIR
from skillmerge.report import run as write_report
from skillmerge.report.results import Results, collect


def _records(word: str, n: int) -> list[ChatRecord]:
    return [
        ChatRecord((Message("user", f"Say {word} {i}"), Message("assistant", f"{word} {i}")), id=f"{word}{i}")
        for i in range(n)
    ]


def _spec(root: Path, model_dir: Path) -> Path:
    data = root / "data"
    data.mkdir()
    write_jsonl(data / "general.jsonl", make_chat_records(32, seed=2))
    for word in ("echo", "shout"):
        write_jsonl(data / f"{word}.jsonl", _records(word, 12))
        write_jsonl(data / f"{word}-val.jsonl", _records(word, 4))
    skills = [
        {
            "name": word,
            "train": [f"data/{word}.jsonl"],
            "validation": [f"data/{word}-val.jsonl"],
            "sizes": {"caps": [8]},
            "score": "general",
        }
        for word in ("echo", "shout")
    ]
    spec = {
        "name": "paths",
        "models": {"base": str(model_dir), "general": str(model_dir)},  # θ_G given: no train/general step
        "data": {"general": ["data/general.jsonl"], "skills": skills},
        "methods": ["cft_replay", "ptm", "multi_skill"],
        "merge": {"methods": ["task_arithmetic"], "omegas": [0.5, 1.0]},
        # ε close to 1: every ω qualifies, so the pick is the best validation score (never "none").
        "selection": {"rules": ["heuristic", "validation"], "epsilon": 0.99},
        "training": {
            "default": {"max_steps": 1, "warmup_ratio": 0.0, "batch_size": 4, "data": {"max_len": 48}}
        },
        "eval": {"limit": 2, "general": ["general-mc"]},
    }
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _result(run_dir: Path, step_prefix: str) -> dict:
    folder = next((run_dir / STEPS_DIR).glob(step_prefix.replace("/", "--") + ".*"))
    return json.loads((folder / "manifest.json").read_text())["result"]


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> dict[int, tuple[Path, RunSummary]]:
    root = tmp_path_factory.mktemp("paths")
    spec = _spec(root, tiny_model_dir)
    return {
        workers: (
            root / f"run{workers}",
            run_experiment(spec, root / f"run{workers}", workers=workers, echo=lambda _: None),
        )
        for workers in (1, 2)
    }


def test_given_general_model_cft_replay_and_multi_skill_merges_all_run(runs: dict) -> None:
    run_dir, summary = runs[1]
    outcomes = summary.by_id()
    assert summary.ok and set(outcomes.values()) == {"ran"}
    assert "train/general" not in outcomes
    # data 3, train 4 (cft_replay, θ_D per skill), merge 4 PTM + 2 multi, eval 1+2+4+2, validation 1+4
    assert len(outcomes) == 27
    replay = next((run_dir / STEPS_DIR).glob("train--cft_replay--echo--*"))
    assert len((replay / "replay-general.jsonl").read_text().splitlines()) == 8  # as many general as skill
    # |G| = 32 general examples, |D| = 8 per skill: ω_k = 8 / 32 for both skills.
    assert _result(run_dir, "merge/multi/task_arithmetic/echo+shout/heuristic")["omegas"] == [0.25, 0.25]
    picked = _result(run_dir, "merge/multi/task_arithmetic/echo+shout/validation")["omegas"]
    assert len(picked) == 2 and set(picked) <= {0.5, 1.0}
    # Each skill's candidates are scored by the chat suite on that skill's validation file (4 records).
    folder = next((run_dir / STEPS_DIR).glob("eval-validation--ptm--task_arithmetic--echo--*"))
    validation = json.loads((folder / "manifest.json").read_text())["result"]
    assert set(validation["chat"]) == {"exact_match", "f1", "score"}
    assert validation["chat"]["score"] == validation["chat"]["f1"]
    chat = json.loads((folder / "eval" / "chat" / "summary.json").read_text())
    assert chat["n_items"] == 2 and chat["meta"]["total_items"] == 4  # eval.limit 2 of the 4 records
    assert chat["meta"]["paths"][0].endswith("echo-val.jsonl")
    recipe = _result(run_dir, "merge/multi/task_arithmetic/echo+shout/heuristic")["recipe"]
    assert [m["weight"] for m in recipe["models"]] == [1.0, 0.25, 0.25]


def test_multi_skill_merges_record_their_task_vectors_overlap_for_the_report(runs: dict) -> None:
    run_dir, _ = runs[1]
    overlap = _result(run_dir, "merge/multi/task_arithmetic/echo+shout/heuristic")["overlap"]
    # The tiny-1m Llama: embeddings, its layers, the final norm; one pair of skills.
    assert overlap["groups"][0] == "embeddings" and overlap["groups"][-1] == "other"
    pair = overlap["pairs"]["echo+shout"]
    assert len(pair["cosine"]) == len(pair["sign_conflict"]) == len(overlap["groups"])
    assert all(-1.0 <= c <= 1.0 for c in pair["cosine"])
    # Both θ_D start from θ_base on similar data: their steps share a direction, and disagree on fewer
    # signs than chance.
    assert pair["overall"]["cosine"] > 0.1 and 0.0 < pair["overall"]["sign_conflict"] < 0.5
    results = collect(run_dir)
    assert {e["rule"] for e in results.overlaps} == {"heuristic", "validation"}
    report = write_report(run_dir)
    assert (report / "overlap.png").stat().st_size > 5_000
    markdown = (report / "report.md").read_text(encoding="utf-8")
    assert "Task-vector overlap" in markdown
    assert f"| echo+shout | {pair['overall']['cosine']:.3f} |" in markdown
    assert Results.from_dict(json.loads((report / "results.json").read_text())["results"]).overlaps


def test_two_workers_give_the_same_steps_and_outcomes_as_one(runs: dict) -> None:
    (dir1, one), (dir2, two) = runs[1], runs[2]
    assert one.by_id() == two.by_id()
    assert sorted(p.name for p in (dir1 / STEPS_DIR).iterdir()) == sorted(
        p.name for p in (dir2 / STEPS_DIR).iterdir()
    )
    # Paths differ between the run directories; the weights and scores do not.
    for prefix in (
        "merge/multi/task_arithmetic/echo+shout/heuristic",
        "merge/multi/task_arithmetic/echo+shout/validation",
    ):
        first, second = _result(dir1, prefix), _result(dir2, prefix)
        assert (first["omegas"], first["weights_fingerprint"]) == (
            second["omegas"],
            second["weights_fingerprint"],
        )
    assert _result(dir1, "eval/multi/task_arithmetic/echo+shout/validation") == _result(
        dir2, "eval/multi/task_arithmetic/echo+shout/validation"
    )
    # CPU training joins the workers (two trainings at once); one worker trains in this process.
    for train in sorted((dir2 / STEPS_DIR).glob("train--*")):
        manifest = json.loads((train / "manifest.json").read_text())
        alone = json.loads(next((dir1 / STEPS_DIR).glob(train.name)).joinpath("manifest.json").read_text())
        assert manifest["worker"]["pid"] != os.getpid() and alone["worker"]["pid"] == os.getpid()
        assert manifest["result"]["final_loss"] == alone["result"]["final_loss"]


def test_a_rerun_with_workers_hits_the_cache(runs: dict, tiny_model_dir: Path) -> None:
    run_dir, first = runs[2]
    again = run_experiment(run_dir.parent / "spec.yaml", run_dir, workers=2, echo=lambda _: None)
    assert again.count("cached") == len(first.outcomes) and again.count("ran") == 0
