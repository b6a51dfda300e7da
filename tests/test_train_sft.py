"""The SFT recipe on a real tiny Llama: learning, assistant-only loss, cost accounting, refused inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from skillmerge.data.records import ChatRecord, Message, write_jsonl
from skillmerge.data.tokenize import tokenize_records
from skillmerge.errors import OutputExistsError, TemplateError, UsageError
from skillmerge.models.io import load_model, read_manifest
from skillmerge.models.tiny import make_tiny_model
from skillmerge.train import build_train_config, run
from skillmerge.train.cost import training_flops

pytestmark = pytest.mark.usefixtures("one_thread")


def fields(model: Path, data: Path, out: Path, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": str(model),
        "out": str(out),
        "data": {"files": [str(data)], "template": "chatml", "max_len": 128},
        "lr": 3e-3,
        "batch_size": 8,
        "progress": False,
        "log_steps": 10_000,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_loss_decreases_on_a_tiny_task(tiny_model_dir: Path, train_file: Path, tmp_path: Path) -> None:
    result = run(build_train_config(fields(tiny_model_dir, train_file, tmp_path / "out", epochs=2)))
    losses = [m["loss"] for m in metrics(tmp_path / "out")]
    assert len(losses) == result.steps == 30  # 120 examples / 8 per step × 2 epochs
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5
    model, _ = load_model(tmp_path / "out")  # the output is a loadable HF directory
    assert model.config.model_type == "llama"


def test_only_assistant_tokens_reach_the_loss(
    tiny_model_dir: Path, train_file: Path, chat_records: list[ChatRecord], tmp_path: Path
) -> None:
    """The logged first-step loss equals a hand computation over assistant targets only."""
    config = fields(tiny_model_dir, train_file, tmp_path / "out", batch_size=120, max_steps=1)
    run(build_train_config(config))
    logged = metrics(tmp_path / "out")[0]

    model, tokenizer = load_model(tiny_model_dir)
    examples, _ = tokenize_records(chat_records, tokenizer, "chatml", 128)
    total, count = 0.0, 0
    with torch.no_grad():
        for example in examples:
            logits = model(torch.tensor([example.input_ids])).logits[0, :-1]
            labels = torch.tensor(example.labels[1:])
            total += torch.nn.functional.cross_entropy(
                logits, labels, ignore_index=-100, reduction="sum"
            ).item()
            count += int((labels != -100).sum())
    # Targets are the assistant answers plus their end marker, nothing of the prompts.
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    expected = sum(
        len(tokenizer(m.content, add_special_tokens=False)["input_ids"]) + 1
        for r in chat_records
        for m in r.messages
        if m.role == "assistant"
    )
    assert im_end is not None
    assert logged["loss_tokens"] == count == expected
    assert logged["loss"] == pytest.approx(total / count, rel=1e-5)


def test_manifest_records_cost_and_flops_match_formula(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run(build_train_config(fields(tiny_model_dir, train_file, out, max_steps=4, seed=3)))
    manifest = read_manifest(out)
    cost = manifest["cost"]
    steps = metrics(out)
    for key in (
        "optimizer_steps",
        "examples",
        "tokens",
        "loss_tokens",
        "trainable_params",
        "total_params",
        "flops",
        "flops_formula",
        "wall_seconds",
        "peak_rss_bytes",
    ):
        assert key in cost, key
    assert cost["optimizer_steps"] == 4 and cost["examples"] == 32
    assert cost["tokens"] == sum(m["tokens"] for m in steps)
    assert cost["loss_tokens"] == sum(m["loss_tokens"] for m in steps)
    assert cost["trainable_params"] == cost["total_params"] == 846_976
    assert cost["flops"] == training_flops(cost["total_params"], cost["trainable_params"], cost["tokens"])
    assert cost["flops"] == 6 * cost["total_params"] * cost["tokens"]
    assert cost["wall_seconds"] > 0 and cost["peak_rss_bytes"] > 10_000_000
    assert manifest["seed"] == 3 and manifest["config"]["lr"] == 3e-3
    assert manifest["inputs"][str(train_file)]  # data fingerprint
    assert any(key.startswith("model:") for key in manifest["inputs"])
    assert manifest["library_versions"]["torch"] == torch.__version__


def test_validation_loss_is_logged_every_n_steps(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path
) -> None:
    config = fields(tiny_model_dir, train_file, tmp_path / "out", max_steps=4, eval_steps=2)
    config["data"]["val_fraction"] = 0.2
    result = run(build_train_config(config))
    logged = metrics(tmp_path / "out")
    assert [("val_loss" in m) for m in logged] == [False, True, False, True]
    assert result.val_loss == logged[-1]["val_loss"] and 0 < result.val_loss < 10
    assert read_manifest(tmp_path / "out")["data"]["validation"]["n_examples"] == 24


def test_packing_mode_trains_on_the_same_targets(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path
) -> None:
    config = fields(tiny_model_dir, train_file, tmp_path / "out", batch_size=2, max_steps=3)
    config["data"]["packing"] = True
    result = run(build_train_config(config))
    assert result.cost.loss_tokens > 0 and result.final_loss == result.final_loss  # not NaN
    assert result.cost.padded_tokens >= result.cost.tokens


# Bad input: each refused with one line naming the culprit, before any output is written.


def test_empty_dataset_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(UsageError, match=r"empty.jsonl: no records \(empty dataset\)$"):
        run(build_train_config(fields(tiny_model_dir, empty, tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_every_example_longer_than_max_len_is_refused(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path
) -> None:
    config = fields(tiny_model_dir, train_file, tmp_path / "out")
    config["data"]["max_len"] = 6  # shorter than every prompt: no assistant token survives
    with pytest.raises(UsageError, match=r"no example left: all 120 records dropped .* max_len 6"):
        run(build_train_config(config))
    assert not (tmp_path / "out").exists()


def test_template_whose_special_tokens_the_tokenizer_lacks_is_refused(
    train_file: Path, tmp_path: Path, chat_records: list[ChatRecord]
) -> None:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([m.content for r in chat_records for m in r.messages], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>")
    model_dir = make_tiny_model("tiny-1m", fast, tmp_path / "plain")
    with pytest.raises(TemplateError, match=r"cannot render chat template 'chatml': missing <\|im_start\|>"):
        run(build_train_config(fields(model_dir, train_file, tmp_path / "out")))


def test_existing_output_without_overwrite_is_refused(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"out: output exists \(pass --overwrite"):
        run(build_train_config(fields(tiny_model_dir, train_file, out, max_steps=1)))
    assert (out / "keep.txt").read_text() == "mine"
    run(build_train_config(fields(tiny_model_dir, train_file, out, max_steps=1, overwrite=True)))
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()


def test_too_few_examples_for_one_effective_batch_is_refused(
    tiny_model_dir: Path, tmp_path: Path, chat_records: list[ChatRecord]
) -> None:
    small = tmp_path / "small.jsonl"
    write_jsonl(small, chat_records[:5])
    with pytest.raises(
        UsageError,
        match=r"^5 examples are fewer than one effective batch of 16 \(1 processes × 2 accumulation",
    ):
        run(build_train_config(fields(tiny_model_dir, small, tmp_path / "out", grad_accum=2)))


def test_two_turn_conversation_trains_on_both_answers(tiny_model_dir: Path, tmp_path: Path) -> None:
    record = ChatRecord(
        (Message("user", "a"), Message("assistant", "b"), Message("user", "c"), Message("assistant", "d")),
    )
    data = tmp_path / "two.jsonl"
    write_jsonl(data, [record] * 8)
    run(build_train_config(fields(tiny_model_dir, data, tmp_path / "out", max_steps=1)))
    # "b<|im_end|>" and "d<|im_end|>": two tokens per answer with this tokenizer, 8 records.
    assert metrics(tmp_path / "out")[0]["loss_tokens"] == 8 * 4


def test_steps_are_random_and_micro_batches_are_length_buckets_under_a_token_budget(
    tiny_tokenizer: PreTrainedTokenizerFast, chat_records: list[ChatRecord]
) -> None:
    from skillmerge.train.data import BatchSchedule

    examples, _ = tokenize_records(chat_records, tiny_tokenizer, "chatml", 128)
    schedule = BatchSchedule(
        examples, batch_size=2, examples_per_step=12, packing=False, max_len=128, seed=7, pad_id=0
    )
    assert schedule.steps_per_epoch == 10 and schedule.max_tokens == 256
    seen: list[int] = []
    for step in range(10):
        units = schedule.step_units(step)
        shares = [schedule.micro_batches(step, p, 2) for p in range(2)]
        dealt = [i for share in shares for batch in share for i in batch]
        assert sorted(dealt) == sorted(units)  # the two processes split the step's examples exactly
        for share in shares:
            lengths = [len(examples[i]) for batch in share for i in batch]
            assert lengths == sorted(lengths)  # each share is cut from a length-sorted list
            assert all(len(batch) * max(len(examples[i]) for i in batch) <= 256 for batch in share)
        counts = schedule.counts(step, 2)
        assert counts["examples"] == 12 and counts["micro_batches"] == sum(len(s) for s in shares)
        assert counts["padded_tokens"] >= counts["tokens"]
        seen += units
    assert sorted(seen) == list(range(120))  # every example once per epoch
    assert schedule.step_units(10) != schedule.step_units(0)  # reshuffled for the next epoch
    # Steps are drawn at random, not by length: the first step mixes short and long examples.
    first = sorted(len(examples[i]) for i in schedule.step_units(0))
    assert first[-1] - first[0] > 10


def test_cheapest_split_matches_brute_force() -> None:
    import itertools
    import random

    from skillmerge.train.data import cheapest_split

    def cost(lengths: list[int], cuts: list[tuple[int, int]], overhead: int) -> int:
        return sum((b - a) * lengths[b - 1] + overhead for a, b in cuts)

    rng = random.Random(0)
    for _ in range(40):
        lengths = sorted(rng.randint(1, 60) for _ in range(rng.randint(1, 7)))
        max_tokens, overhead = rng.randint(60, 200), rng.choice([0, 8, 32])
        n = len(lengths)
        candidates = []
        for mask in itertools.product([False, True], repeat=n - 1):
            bounds = [0, *[i + 1 for i, cut in enumerate(mask) if cut], n]
            cuts = list(itertools.pairwise(bounds))
            if all(b - a == 1 or (b - a) * lengths[b - 1] <= max_tokens for a, b in cuts):
                candidates.append(cost(lengths, cuts, overhead))
        found = cheapest_split(lengths, max_tokens, overhead)
        assert [a for a, _ in found] == [0, *[b for _, b in found[:-1]]] and found[-1][1] == n
        assert cost(lengths, found, overhead) == min(candidates)


def test_token_budget_split_cuts_greedily_under_the_budget() -> None:
    from skillmerge.train.data import token_budget_split

    assert token_budget_split([3, 4, 5, 9], 12) == [(0, 3), (3, 4)]
    assert token_budget_split([3, 4, 5, 9], 100) == [(0, 4)]
    assert token_budget_split([20, 30], 10) == [(0, 1), (1, 2)]  # a longer item is its own group
    assert token_budget_split([], 10) == []


def test_padding_free_steps_lay_the_same_examples_end_to_end_without_padding(
    tiny_tokenizer: PreTrainedTokenizerFast, chat_records: list[ChatRecord]
) -> None:
    from skillmerge.train.data import BatchSchedule

    examples, _ = tokenize_records(chat_records, tiny_tokenizer, "chatml", 128)
    # batch_size × max_len = 1536 tokens ≥ any 12 of these examples (the longest has 71), in one row of ≤ 1024
    common: dict[str, Any] = {"batch_size": 12, "examples_per_step": 12, "max_len": 128, "seed": 7}
    common["pad_id"] = 0
    assert 12 * max(len(e) for e in examples) <= 1024
    padded = BatchSchedule(examples, packing=False, **common)
    free = BatchSchedule(examples, packing=False, padding_free=True, **common)
    for step in range(10):
        assert free.step_units(step) == padded.step_units(step)  # the same examples in every step
        for processes in (1, 2):
            shares = [free.micro_batches(step, p, processes) for p in range(processes)]
            dealt = sorted(i for share in shares for batch in share for i in batch)
            assert dealt == sorted(free.step_units(step))
            for share in shares:
                assert all(sum(len(examples[i]) for i in batch) <= free.max_tokens for batch in share)
        counts, padded_counts = free.counts(step, 1), padded.counts(step, 1)
        assert counts["tokens"] == padded_counts["tokens"]
        assert counts["loss_tokens"] == padded_counts["loss_tokens"]
        assert counts["micro_batches"] == 1 and counts["padded_tokens"] == counts["tokens"]  # one row, no pad
        (batch,) = free.micro_batches(step, 0, 1)
        tensors = free.collate(batch)
        assert tensors["input_ids"].shape == (1, counts["tokens"])
        assert tensors["attention_mask"] is not None and tensors["attention_mask"].dim() == 4
        targets = int((tensors["labels"][:, 1:] != -100).sum())
        assert targets == counts["loss_tokens"]


def test_padding_free_rows_are_bounded_unless_one_example_is_longer(
    tiny_tokenizer: PreTrainedTokenizerFast, chat_records: list[ChatRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    from skillmerge.train import data as train_data

    examples, _ = tokenize_records(chat_records, tiny_tokenizer, "chatml", 128)
    longest = max(len(e) for e in examples)
    monkeypatch.setattr(train_data, "ROW_TOKENS", longest - 1)  # shorter than the longest example
    schedule = train_data.BatchSchedule(
        examples, batch_size=8, examples_per_step=8, packing=False, padding_free=True, max_len=128, seed=0,
        pad_id=0,
    )  # fmt: skip
    for step in range(schedule.steps_per_epoch):
        for batch in schedule.micro_batches(step, 0, 1):
            rows = schedule._rows(batch)
            assert sorted(i for row in rows for i in row.example_indices) == list(range(len(batch)))
            assert all(len(row) <= max(longest - 1, max(len(examples[i]) for i in batch)) for row in rows)
            assert schedule.collate(batch)["input_ids"].shape[0] == len(rows)


def test_padding_free_step_has_the_padded_steps_loss_and_gradients(
    tiny_model_dir: Path, tiny_tokenizer: PreTrainedTokenizerFast, chat_records: list[ChatRecord]
) -> None:
    """Examples laid end to end (block-diagonal attention) give the padded batch's loss and gradients."""
    from skillmerge.train.data import BatchSchedule
    from skillmerge.train.head import TargetHead, token_loss_sum

    examples, _ = tokenize_records(chat_records, tiny_tokenizer, "chatml", 128)
    model, _ = load_model(tiny_model_dir)
    head = TargetHead(model)
    common: dict[str, Any] = {"batch_size": 8, "examples_per_step": 8, "max_len": 128, "seed": 3, "pad_id": 0}

    def loss_and_grads(schedule: BatchSchedule) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        total = torch.zeros(())
        for batch in schedule.micro_batches(0, 0, 1):
            tensors = schedule.collate(batch)
            labels = tensors.pop("labels")
            with head.targets(labels):
                logits = model(**{k: v for k, v in tensors.items() if v is not None}, use_cache=False).logits
                summed = token_loss_sum(logits, labels)
            summed.backward()
            total += summed.detach()
        return float(total), [p.grad.clone() for p in model.parameters()]

    padded_loss, padded_grads = loss_and_grads(BatchSchedule(examples, packing=False, **common))
    free = BatchSchedule(examples, packing=False, padding_free=True, **common)
    free_loss, free_grads = loss_and_grads(free)
    assert free_loss == pytest.approx(padded_loss, rel=1e-5)
    for a, b in zip(free_grads, padded_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # float summation order only


def test_padding_free_and_packing_are_refused_together_and_keyed_only_when_on(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from skillmerge.train.config import TrainConfig

    base = {"model": "m", "out": str(tmp_path / "o")}
    with pytest.raises(ValidationError, match="two layouts"):
        TrainConfig(**base, data={"files": ["x"], "packing": True, "padding_free": True})
    assert "data.padding_free" not in TrainConfig(**base, data={"files": ["x"]}).trajectory()
    on = TrainConfig(**base, data={"files": ["x"], "padding_free": True}).trajectory()
    assert on["data.padding_free"] is True
