"""The findings' 95% intervals: a paired bootstrap over the test items each evaluation wrote (no training).

Runs are hand-written step directories with ``eval/scores.json`` and ``eval/<suite>/items.jsonl`` as
``skillmerge.evaluate.run`` writes them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from skillmerge.report import load_results, run
from skillmerge.report.findings import findings, judged
from skillmerge.report.results import collect

N = 256  # general test items
SAFETY = 64


def _write(root: Path, step_id: str, manifest: dict) -> Path:
    folder = root / "steps" / f"{step_id.replace('/', '--')}.{'0' * 16}"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"id": step_id, "key": "0" * 64, **manifest}))
    return folder


def _eval(root: Path, step_id: str, model: str | None, items: dict[str, dict[str, list[float]]]) -> None:
    """``items``: score → suite → per-item scores (ids ``<suite>-<i>``, the same for every model)."""
    components = {score: {s: sum(v) / len(v) for s, v in suites.items()} for score, suites in items.items()}
    scores = {score: 100 * sum(parts.values()) / len(parts) for score, parts in components.items()}
    manifest = {"kind": "eval", "config": {"split": "test"}, "deps": [model] if model else []}
    folder = _write(root, step_id, {**manifest, "result": {"scores": scores}})
    out = folder / "eval"
    out.mkdir()
    (out / "scores.json").write_text(json.dumps({**scores, "components": components}))
    for suites in items.values():
        for suite, values in suites.items():
            (out / suite).mkdir()
            lines = [json.dumps({"id": f"{suite}-{i}", "score": v}) for i, v in enumerate(values)]
            (out / suite / "items.jsonl").write_text("\n".join(lines) + "\n")


def _train(root: Path, step_id: str, tokens: int) -> str:
    cost = {"optimizer_steps": 1, "tokens": tokens, "flops": float(tokens), "wall_seconds": 1.0}
    _write(root, step_id, {"kind": "train", "config": {"recipe": step_id.split("/")[1]}, "deps": []})
    manifest = root / "steps" / f"{step_id.replace('/', '--')}.{'0' * 16}" / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "result": {"cost": cost}}))
    return step_id


def _flip(values: list[float], count: int, to: float) -> list[float]:
    """``values`` with the first ``count`` items not already ``to`` set to ``to``."""
    out, left = list(values), count
    for i, v in enumerate(out):
        if left and v != to:
            out[i], left = to, left - 1
    return out


@pytest.fixture
def paired_run(tmp_path: Path) -> Path:
    """θ_G answers 128 of 256 general items; CFT loses 32 of them, PTM exactly none (the same items)."""
    root = tmp_path / "run"
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"spec": "fake"}))
    rng = random.Random(0)
    general = [1.0] * 128 + [0.0] * 128
    rng.shuffle(general)
    refuse_none, refuse_most = [0.0] * SAFETY, _flip([0.0] * SAFETY, 56, 1.0)
    comply = [1.0] * SAFETY
    _eval(
        root,
        "eval/general",
        None,
        {
            "general": {"world-general": general},
            "safety": {"world-safety": refuse_none},
            "exaggerated_refusal": {"world-xstest": comply},
        },
    )
    tag = "safety/pct100/seed0"
    for method, general_items, tokens in (
        ("cft", _flip(general, 32, 0.0), 1000),
        ("rt", _flip(general, 2, 0.0), 20000),
    ):
        _eval(
            root,
            f"eval/{method}/{tag}",
            _train(root, f"train/{method}/{tag}", tokens),
            {
                "general": {"world-general": general_items},
                "safety": {"world-safety": refuse_most},
                "exaggerated_refusal": {"world-xstest": comply},
            },
        )
    theta_d = _train(root, f"train/skill/{tag}", 1000)
    merge = f"merge/ptm/task_arithmetic/{tag}/w1"
    _write(root, merge, {"kind": "merge", "config": {"omega": 1.0}, "deps": [theta_d], "seconds": 1.0})
    _eval(
        root,
        merge.replace("merge/", "eval/", 1),
        merge,
        {
            "general": {"world-general": general},
            "safety": {"world-safety": refuse_most},
            "exaggerated_refusal": {"world-xstest": comply},
        },
    )
    return root


def test_the_bootstrap_pairs_models_on_the_same_items(paired_run: Path) -> None:
    results = collect(paired_run)
    found = findings(results, replicates=400, seed=1)
    f1 = found["F1"]
    assert f1["holds"] is True and f1["holds_share"] == 1.0
    assert f1["max_ptm_loss"] == 0.0 and f1["ci"]["max_ptm_loss"] == [0.0, 0.0]  # identical items: no spread
    low, high = f1["ci"]["min_cft_loss"]
    assert f1["min_cft_loss"] == pytest.approx(0.25)  # 32 of 128
    # Paired, the loss only varies with how many of the 32 lost items and of θ_G's 128 a resample draws:
    # about ±0.07 at 95%; resampling θ_G and CFT independently would spread it about ±0.2.
    assert 0.14 < low < 0.23 < 0.27 < high < 0.36, (low, high)
    assert f1["ci"]["theta_G_general"][0] < 50.0 < f1["ci"]["theta_G_general"][1]
    assert "resampled scores: exaggerated_refusal, general, safety" in f1["ci_method"]
    # The point estimate is the verdict on the measured scores, whatever the resamples say.
    assert {k: v for k, v in f1.items() if k not in ("ci", "ci_method", "holds_share")} == judged(results)[
        "F1"
    ]
    assert findings(results, replicates=400, seed=1) == found  # seeded: the same intervals


def test_only_scores_that_are_their_items_mean_are_resampled(paired_run: Path) -> None:
    # θ_G's general suite now reports a score that is not the mean of its items (as pass@k with k > 1 is):
    # its items are not read, so no row's general score can be redrawn pairwise with θ_G's.
    scores_file = next((paired_run / "steps").glob("eval--general.*")) / "eval" / "scores.json"
    data = json.loads(scores_file.read_text())
    data["components"]["general"]["world-general"] = 0.6
    scores_file.write_text(json.dumps(data))
    results = collect(paired_run)
    general = results.general()
    assert general is not None and "general" not in general.items and "safety" in general.items
    f1 = findings(results, replicates=200)["F1"]
    assert f1["ci"]["theta_G_general"] == [50.0, 50.0]  # kept as measured in every replicate


def test_without_item_scores_there_is_no_interval_and_the_report_says_why(tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"spec": "fake"}))
    _write(
        root,
        "eval/general",
        {"kind": "eval", "config": {"split": "test"}, "deps": [], "result": {"scores": {"general": 40.0}}},
    )
    f1 = findings(collect(root))["F1"]
    assert f1["ci"] is None and f1["ci_reason"] == "no per-item test scores in the run"
    assert findings(collect(root), replicates=0)["F1"]["ci_reason"] == "no bootstrap asked for"


def test_intervals_reach_the_report_and_survive_results_json(paired_run: Path) -> None:
    out = run(paired_run)
    markdown = (out / "report.md").read_text()
    assert "| Finding | Claim | Holds | Key numbers | 95% interval |" in markdown
    f1_line = next(line for line in markdown.splitlines() if line.startswith("| F1 |"))
    assert "min_cft_loss [0." in f1_line and "holds in 100% of resamples" in f1_line
    loaded = load_results(out / "results.json")
    assert loaded == collect(paired_run)
    assert (
        loaded.general() is not None and len(loaded.general().items["general"]["world-general"].scores) == N
    )
    saved = json.loads((out / "results.json").read_text())
    assert (
        saved["findings"]["F1"]["ci"]["min_cft_loss"]
        == findings(collect(paired_run))["F1"]["ci"]["min_cft_loss"]
    )
