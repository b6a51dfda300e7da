"""The ptm_general arm: θ_G + ω·(θ_D^G − θ_G) beside the paper's θ_G + ω·(θ_D − θ_base), on the same θ_G."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from transformers import PreTrainedTokenizerFast

from conftest import make_chat_records
from skillmerge.cli import run_cli
from skillmerge.data.records import ChatRecord, Message, write_jsonl
from skillmerge.experiment.status import STEPS_DIR
from skillmerge.models.tiny import make_tiny_model


def _spec(root: Path, base: Path, general: Path) -> Path:
    data = root / "data"
    data.mkdir()
    write_jsonl(data / "general.jsonl", make_chat_records(24, seed=1))
    echo = [
        ChatRecord((Message("user", f"Echo {i}"), Message("assistant", f"echo {i} echo")), id=f"e{i}")
        for i in range(12)
    ]
    write_jsonl(data / "skill.jsonl", echo)
    spec = {
        "name": "two-forms",
        "models": {"base": str(base), "general": str(general)},
        "data": {
            "general": ["data/general.jsonl"],
            "skills": [{"name": "echo", "train": ["data/skill.jsonl"], "score": "general"}],
        },
        "methods": ["cft", "ptm", "ptm_general"],
        "merge": {"methods": ["task_arithmetic", "linear"], "omegas": [0.5]},
        "selection": {"rules": ["heuristic"]},
        "training": {"default": {"max_steps": 2, "batch_size": 4, "data": {"max_len": 64}}},
        "eval": {"general": ["xstest"]},
    }
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_both_ptm_forms_merge_into_the_same_general_model(
    tmp_path: Path, tiny_model_dir: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    general = make_tiny_model("tiny-1m", tiny_tokenizer, tmp_path / "general", seed=1)
    run_dir = tmp_path / "run"
    assert (
        run_cli(
            ["run", str(_spec(tmp_path, tiny_model_dir, general)), "--out", str(run_dir), "--eval-limit", "2"]
        )
        == 0
    )
    manifests = {}
    dirs = {}
    for step_dir in (run_dir / STEPS_DIR).iterdir():
        manifest = json.loads((step_dir / "manifest.json").read_text())
        manifests[manifest["id"]] = manifest
        dirs[manifest["id"]] = step_dir
    cell = "echo/pct100/seed0"
    # θ_D^G is θ_G on D with CFT's recipe: linked to the CFT model, not trained again.
    linked = manifests[f"train/skill-from-G/{cell}"]
    assert linked["config"]["same_as"] == f"train/cft/{cell}"
    assert f"train/cft/{cell}" in linked["deps"]

    from_g = manifests[f"merge/ptm/task_arithmetic-from-G/{cell}/w0.5"]
    recipe = from_g["result"]["recipe"]
    assert from_g["config"]["vector_from"] == "general"
    assert recipe["base_model"] == str(general)  # τ = θ_D^G − θ_G
    assert recipe["models"][0] == {"model": str(general), "weight": 1.0}
    assert recipe["models"][1]["weight"] == 0.5
    assert recipe["models"][1]["model"] == str(dirs[f"train/skill-from-G/{cell}"] / "model")

    paper = manifests[f"merge/ptm/task_arithmetic/{cell}/w0.5"]
    assert paper["result"]["recipe"]["base_model"] == str(tiny_model_dir)  # τ = θ_D − θ_base
    assert "vector_from" not in paper["config"]  # old keys stay valid
    assert f"merge/ptm/linear-from-G/{cell}/w0.5" not in manifests  # linear has no task vector

    assert from_g["result"]["weights_fingerprint"] != paper["result"]["weights_fingerprint"]
    assert (
        manifests[f"eval/ptm/task_arithmetic-from-G/{cell}/w0.5"]["result"]["scores"]["general"] is not None
    )
    assert run_cli(["report", str(run_dir)]) == 0
    rows = json.loads((run_dir / "report" / "results.json").read_text())
    assert "ptm/task_arithmetic-from-G" in json.dumps(rows)
