"""Training config, presets, schedule and cost formulas: pure functions, no model."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from skillmerge.errors import UsageError
from skillmerge.train.config import build_train_config, load_train_config
from skillmerge.train.cost import TrainCost, training_flops
from skillmerge.train.schedule import linear_multiplier, make_scheduler, warmup_steps

BASE = {"model": "m", "out": "o", "data": {"files": ["d.jsonl"]}}


def test_paper_preset_is_the_papers_recipe() -> None:
    config = build_train_config({**BASE, "preset": "paper"})
    assert config.lr == 2e-5
    assert config.schedule == "linear"
    assert config.warmup_ratio == 0.03
    assert config.weight_decay == 0.0
    assert config.epochs == 2
    assert config.effective_batch_size == 128
    assert config.data.max_len == 4096
    assert not config.lora.enabled
    assert config.grad_accum_for(8) == 16  # 8 processes × batch 1 × 16 = 128


def test_default_preset_is_small_and_explicit_fields_win() -> None:
    config = build_train_config({**BASE, "lr": 5e-4, "data": {"files": ["d.jsonl"], "max_len": 256}})
    assert (config.lr, config.batch_size, config.data.max_len) == (5e-4, 4, 256)
    assert config.grad_accum_for(1) == 1


@pytest.mark.parametrize("lr", [0.0, -1e-4])
def test_learning_rate_not_positive_is_refused(lr: float) -> None:
    with pytest.raises(UsageError, match=r"^train: lr: learning rate must be > 0"):
        build_train_config({**BASE, "lr": lr}, where="train")


def test_effective_batch_not_divisible_by_processes_times_batch_is_refused() -> None:
    config = build_train_config({**BASE, "batch_size": 2, "effective_batch_size": 8})
    assert config.grad_accum_for(2) == 2
    with pytest.raises(
        UsageError, match=r"effective_batch_size 8 is not divisible by processes × batch_size"
    ):
        config.grad_accum_for(3)
    with pytest.raises(
        UsageError, match=r"^config: effective_batch_size 10 is not divisible by batch_size 4$"
    ):
        build_train_config({**BASE, "batch_size": 4, "effective_batch_size": 10})


def test_grad_accum_flag_replaces_the_presets_effective_batch() -> None:
    config = build_train_config({**BASE, "preset": "paper", "grad_accum": 4})
    assert (config.grad_accum, config.effective_batch_size) == (4, None)


def test_yaml_error_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("model: m\nout: o\nepochs: many\n", encoding="utf-8")
    with pytest.raises(UsageError) as err:
        load_train_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: epochs: ")
    assert "\n" not in message
    path.write_text("model: m\nout: o\nlearning_rate: 1\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"train.yaml: learning_rate: Extra inputs are not permitted"):
        load_train_config(path)


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown preset 'fast'"):
        build_train_config({**BASE, "preset": "fast"})


def test_linear_schedule_matches_formula() -> None:
    total, ratio = 100, 0.03
    warm = warmup_steps(total, ratio)
    assert warm == 3
    assert [linear_multiplier(s, total, warm) for s in range(4)] == [0.0, 1 / 3, 2 / 3, 1.0]
    assert linear_multiplier(50, total, warm) == pytest.approx((100 - 50) / 97)
    assert linear_multiplier(100, total, warm) == 0.0
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = make_scheduler(optimizer, "linear", total, ratio)
    lrs = []
    for _ in range(total):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[3] == 2.0 and lrs[-1] == pytest.approx(2.0 / 97)
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))


def test_flops_formula_full_and_lora() -> None:
    assert training_flops(1000, 1000, 7) == 6 * 1000 * 7
    assert training_flops(1000, 10, 7) == (4 * 1000 + 2 * 10) * 7
    cost = TrainCost(total_params=100, trainable_params=100)
    cost.add_step(examples=2, tokens=30, padded_tokens=40, loss_tokens=9)
    cost.add_step(examples=2, tokens=20, padded_tokens=24, loss_tokens=5)
    assert (cost.optimizer_steps, cost.tokens, cost.loss_tokens) == (2, 50, 14)
    assert math.isclose(cost.flops, 6 * 100 * 50)
