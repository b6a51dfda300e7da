"""The stages wired together through the CLI on a tiny model: train a skill, merge it, evaluate the merge."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from skillmerge.cli import run_cli


def _skill_data(path: Path, n: int = 48) -> None:
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a} plus {b}?"},
                    {"role": "assistant", "content": f"{a} plus {b} is {a + b}."},
                ]
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_train_merge_eval_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "skill.jsonl"
    _skill_data(data)
    base, skill, merged = tmp_path / "base", tmp_path / "skill", tmp_path / "merged"
    assert run_cli(["tiny-model", "--corpus", str(data), "--preset", "tiny-1m", "--out", str(base)]) == 0
    train = ["train", "--model", str(base), "--data", str(data), "--out", str(skill), "--max-steps", "4"]
    assert run_cli([*train, "--batch-size", "8", "--lr", "1e-3", "--no-progress"]) == 0
    manifest = json.loads((skill / "manifest.json").read_text())
    assert manifest["cost"]["optimizer_steps"] == 4

    omega = 0.5
    (tmp_path / "merge.yaml").write_text(
        f"method: task_arithmetic\nbase_model: {base}\nmodels:\n  - {{model: {skill}, weight: {omega}}}\n"
    )
    assert run_cli(["merge", str(tmp_path / "merge.yaml"), "--out", str(merged)]) == 0
    theta_base = load_file(base / "model.safetensors")
    theta_skill = load_file(skill / "model.safetensors")
    theta_merged = load_file(merged / "model.safetensors")
    for name, value in theta_merged.items():
        expected = theta_base[name] + omega * (theta_skill[name] - theta_base[name])
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)

    out = tmp_path / "eval"
    assert run_cli(["eval", str(merged), "--suite", "xstest", "--limit", "2", "--out", str(out)]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert 0.0 <= scores["exaggerated_refusal"] <= 100.0
    items = (out / "xstest" / "items.jsonl").read_text().splitlines()
    assert items and all({"prompt", "completion", "verdict"} <= json.loads(x).keys() for x in items)
    capsys.readouterr()
