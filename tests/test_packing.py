"""Packing keeps examples independent (same logits and loss as alone); bucketing pads within budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from skillmerge.data.packing import (
    block_causal_mask,
    bucket_batches,
    collate_packed,
    collate_padded,
    pack_examples,
    packed_batches,
)
from skillmerge.data.records import ChatRecord
from skillmerge.data.tokenize import IGNORE_INDEX, TokenizedExample, tokenize_records
from skillmerge.errors import UsageError

SEQ_LEN = 96


def _example(n: int, first: int = 10) -> TokenizedExample:
    ids = tuple(range(first, first + n))
    return TokenizedExample(ids, ids)


@pytest.fixture(scope="module")
def examples(
    chat_records: list[ChatRecord], tiny_tokenizer: PreTrainedTokenizerFast
) -> list[TokenizedExample]:
    out, _ = tokenize_records(chat_records[:24], tiny_tokenizer, "chatml", max_len=SEQ_LEN)
    return out


def _summed_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Σ of next-token cross-entropy over labelled positions, and how many there are."""
    shift_logits = logits[..., :-1, :].reshape(-1, logits.shape[-1])
    shift_labels = labels[..., 1:].reshape(-1)
    total = F.cross_entropy(shift_logits.double(), shift_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total, int((shift_labels != IGNORE_INDEX).sum())


def test_every_example_is_packed_once_within_seq_len(examples: list[TokenizedExample]) -> None:
    rows = pack_examples(examples, SEQ_LEN)
    placed = sorted(i for row in rows for i in row.example_indices)
    assert placed == list(range(len(examples)))
    assert all(len(row) <= SEQ_LEN for row in rows)
    assert sum(len(row) for row in rows) == sum(len(e) for e in examples)
    # best fit: fewer rows than one per example, and no two rows could be merged
    assert len(rows) < len(examples)
    lengths = sorted(len(row) for row in rows)
    assert lengths[0] + lengths[1] > SEQ_LEN


def test_best_fit_fills_rows_exactly_when_possible() -> None:
    rows = pack_examples([_example(n) for n in (6, 4, 5, 5, 3, 7)], 10)
    assert sorted(len(row) for row in rows) == [10, 10, 10]


def test_packing_is_deterministic(examples: list[TokenizedExample]) -> None:
    assert pack_examples(examples, SEQ_LEN) == pack_examples(list(examples), SEQ_LEN)


def test_positions_restart_and_first_labels_are_ignored(examples: list[TokenizedExample]) -> None:
    for row in pack_examples(examples, SEQ_LEN):
        starts = [t for t in range(len(row)) if t == 0 or row.segment_ids[t] != row.segment_ids[t - 1]]
        assert len(starts) == len(row.example_indices)
        for start, index in zip(starts, row.example_indices, strict=True):
            n = len(examples[index])
            assert row.position_ids[start : start + n] == tuple(range(n))
            assert row.input_ids[start : start + n] == examples[index].input_ids
            # no label at an example start: it would be predicted from the previous example
            assert row.labels[start] == IGNORE_INDEX
            assert row.labels[start + 1 : start + n] == examples[index].labels[1:]


def test_no_label_predicts_across_an_example_boundary() -> None:
    # every token of these examples is a target, so only the packer can stop cross-example labels
    [row] = pack_examples([_example(3, first=10), _example(4, first=50)], 8)
    assert row.input_ids == (10, 11, 12, 50, 51, 52, 53)
    assert row.labels == (IGNORE_INDEX, 11, 12, IGNORE_INDEX, 51, 52, 53)
    labels = collate_packed([row], pad_id=0)["labels"]
    assert labels is not None
    _, count = _summed_loss(torch.zeros(1, 7, 60), labels)
    assert count == (3 - 1) + (4 - 1)


def test_block_mask_allows_only_causal_attention_within_an_example() -> None:
    segments = torch.tensor([[0, 0, 0, 1, 1, 2]])
    allowed = block_causal_mask(segments) == 0
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [0, 0, 0, 1, 0, 0],
            [0, 0, 0, 1, 1, 0],
            [0, 0, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert allowed.shape == (1, 1, 6, 6)
    assert torch.equal(allowed[0, 0], expected)
    assert block_causal_mask(segments, torch.bfloat16).dtype == torch.bfloat16


def test_collate_pads_rows_with_an_independent_tail() -> None:
    rows = pack_examples([_example(5), _example(3)], 8)
    batch = collate_packed(rows, pad_id=0, pad_to=10)
    assert batch["input_ids"].shape == (1, 10)
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0, 1]
    assert batch["labels"][0, 8:].tolist() == [IGNORE_INDEX] * 2
    mask = batch["attention_mask"]
    assert mask is not None and mask.shape == (1, 1, 10, 10)
    assert bool((mask[0, 0, 9, :8] < 0).all()) and float(mask[0, 0, 9, 8]) == 0.0
    with pytest.raises(UsageError, match="pad_to=4 is shorter"):
        collate_packed(rows, pad_id=0, pad_to=4)


def test_too_long_example_is_refused() -> None:
    with pytest.raises(UsageError, match=r"example 1 has 12 tokens, more than the packed length 10"):
        pack_examples([_example(3), _example(12)], 10)


@pytest.mark.parametrize(("attn", "mask"), [("sdpa", "4d"), ("eager", "4d"), ("sdpa", "position_ids")])
def test_packed_batch_equals_examples_run_alone(
    attn: str, mask: str, tiny_model_dir: Path, examples: list[TokenizedExample]
) -> None:
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, attn_implementation=attn, dtype=torch.float32
    )
    model.eval()
    subset = examples[:10]
    rows = pack_examples(subset, SEQ_LEN)
    assert any(len(row.example_indices) > 1 for row in rows)
    batch = collate_packed(rows, pad_id=0, pad_to=SEQ_LEN, mask=mask)
    with torch.no_grad():
        # use_cache=False as in training: with a cache, transformers ignores packed position_ids
        packed = model(**batch, use_cache=False)
        packed_sum, packed_count = _summed_loss(packed.logits, batch["labels"])
        alone_sum, alone_count = torch.zeros((), dtype=torch.float64), 0
        for b, row in enumerate(rows):
            start = 0
            for index in row.example_indices:
                example = subset[index]
                n = len(example)
                ids = torch.tensor([example.input_ids])
                alone = model(input_ids=ids).logits
                torch.testing.assert_close(
                    packed.logits[b, start : start + n], alone[0], atol=1e-5, rtol=1e-5
                )
                loss, count = _summed_loss(alone, torch.tensor([example.labels]))
                alone_sum, alone_count = alone_sum + loss, alone_count + count
                start += n
    assert (
        packed_count
        == alone_count
        == sum(e.n_loss_tokens for e in subset) - sum(e.labels[0] != IGNORE_INDEX for e in subset)
    )
    assert abs(float(packed_sum - alone_sum)) / alone_count <= 1e-5
    # the model's own (mean) loss is the token-weighted mean over all examples
    assert abs(float(packed.loss) - float(alone_sum) / alone_count) <= 1e-5


def test_padded_bucket_equals_examples_run_alone(
    tiny_model_dir: Path, examples: list[TokenizedExample]
) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    subset = examples[:4]
    batch = collate_padded(subset, pad_id=0)
    assert batch["attention_mask"] is not None
    assert batch["attention_mask"].sum(dim=1).tolist() == [len(e) for e in subset]
    with torch.no_grad():
        logits = model(**batch).logits
        for b, example in enumerate(subset):
            alone = model(input_ids=torch.tensor([example.input_ids])).logits[0]
            torch.testing.assert_close(logits[b, : len(example)], alone, atol=1e-5, rtol=1e-5)


def test_bucket_batches_respect_token_budget_and_cover_everything() -> None:
    lengths = [5, 50, 7, 48, 6, 20, 21, 100, 8]
    batches = bucket_batches(lengths, max_tokens=100, seed=None)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100
    # without shuffling, batches go shortest first and each holds neighbours in length
    assert batches == [[0, 4, 2, 8, 5], [6, 3], [1], [7]]


def test_bucket_batches_shuffle_is_seeded() -> None:
    lengths = list(range(1, 200))
    first = bucket_batches(lengths, batch_size=4, seed=3)
    assert first == bucket_batches(lengths, batch_size=4, seed=3)
    assert first != bucket_batches(lengths, batch_size=4, seed=4)
    assert all(len(batch) <= 4 for batch in first)
    with pytest.raises(UsageError, match="max_tokens or batch_size"):
        bucket_batches(lengths)


def test_packed_batches_cover_all_rows_deterministically() -> None:
    rows = pack_examples([_example(n) for n in range(1, 30)], 32)
    batches = packed_batches(rows, batch_size=3, seed=1)
    assert sorted(i for batch in batches for i in batch) == list(range(len(rows)))
    assert batches == packed_batches(rows, batch_size=3, seed=1)
