"""``freeze``: weights matching the patterns do not move, the rest trains, and bad patterns are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from skillmerge.errors import UsageError
from skillmerge.models.io import load_model
from skillmerge.train import build_train_config, run

pytestmark = pytest.mark.usefixtures("one_thread")


def fields(model: Path, data: Path, out: Path, **extra: Any) -> dict[str, Any]:
    return {
        "model": str(model),
        "out": str(out),
        "data": {"files": [str(data)], "template": "chatml", "max_len": 128},
        "lr": 1e-2,
        "batch_size": 8,
        "max_steps": 3,
        "progress": False,
        **extra,
    }


def test_frozen_weights_stay_and_the_rest_trains(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path
) -> None:
    freeze = [r"embed_tokens", r"layers\.0\."]
    result = run(build_train_config(fields(tiny_model_dir, train_file, tmp_path / "out", freeze=freeze)))
    before, _ = load_model(tiny_model_dir)
    after, _ = load_model(tmp_path / "out")
    old, new = dict(before.named_parameters()), dict(after.named_parameters())
    frozen = [n for n in old if "embed_tokens" in n or ".layers.0." in n]
    trained = [n for n in old if n not in frozen]
    assert frozen and trained
    for name in frozen:
        assert torch.equal(old[name], new[name]), name
    moved = [n for n in trained if not torch.equal(old[n], new[n])]
    assert len(moved) == len(trained), sorted(set(trained) - set(moved))
    total = sum(p.numel() for p in before.parameters())
    assert result.cost.trainable_params == total - sum(old[n].numel() for n in frozen)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(", "is not a regular expression"),
        ("no_such_weight", "matches no parameter"),
        (".", "freezes every"),
    ],
)
def test_bad_freeze_patterns_are_refused(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path, pattern: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        run(build_train_config(fields(tiny_model_dir, train_file, tmp_path / "out", freeze=[pattern])))
    assert not (tmp_path / "out").exists()
