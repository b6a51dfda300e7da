"""Tokenization: labels on assistant targets only, BOS exactly once, the truncation policy, exact counts."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, processors
from transformers import PreTrainedTokenizerFast

from skillmerge.data.records import ChatRecord, Message
from skillmerge.data.templates import get_template
from skillmerge.data.tokenize import IGNORE_INDEX, bos_to_prepend, tokenize_record, tokenize_records

RECORD = ChatRecord(
    (
        Message("user", "What is 2 plus 2?"),
        Message("assistant", "2 plus 2 is 4."),
        Message("user", "Repeat: the cat"),
        Message("assistant", "the cat"),
    ),
    id="r",
)


def _target_spans(input_ids: tuple[int, ...], labels: tuple[int, ...]) -> list[list[int]]:
    spans: list[list[int]] = []
    previous = IGNORE_INDEX
    for token, label in zip(input_ids, labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            if previous == IGNORE_INDEX:
                spans.append([])
            spans[-1].append(token)
        previous = label
    return spans


def _bos_tokenizer(tiny_tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """The tiny tokenizer plus a Llama-style post-processor that prepends ``<s>``."""
    backend = Tokenizer.from_str(tiny_tokenizer.backend_tokenizer.to_str())
    backend.add_special_tokens(["<s>"])
    bos_id = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.chat_template = tiny_tokenizer.chat_template
    return tokenizer


@pytest.mark.parametrize("template", ["chatml", "tulu", "model"])
def test_only_assistant_answers_and_end_markers_are_labelled(
    template: str, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    example = tokenize_record(RECORD, tiny_tokenizer, template, max_len=None)
    assert example is not None
    spans = [tiny_tokenizer.decode(span) for span in _target_spans(example.input_ids, example.labels)]
    end = "</s>" if template == "tulu" else "<|im_end|>"
    assert spans == [f"2 plus 2 is 4.{end}", f"the cat{end}"]
    # the ids spell exactly the rendered conversation
    assert tiny_tokenizer.decode(example.input_ids) == get_template(template).render(RECORD, tiny_tokenizer)


def test_markers_are_single_special_tokens(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    example = tokenize_record(RECORD, tiny_tokenizer, "chatml", max_len=None)
    assert example is not None
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    im_start = tiny_tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert example.input_ids[0] == im_start
    assert example.input_ids.count(im_end) == 4
    # each answer's end marker is a target, each question's is not
    assert [example.labels[i] for i, t in enumerate(example.input_ids) if t == im_end] == [
        IGNORE_INDEX,
        im_end,
        IGNORE_INDEX,
        im_end,
    ]


def test_no_bos_for_a_tokenizer_without_one(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    assert bos_to_prepend(tiny_tokenizer) is None


def test_bos_is_prepended_once_when_the_tokenizer_adds_it(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    tokenizer = _bos_tokenizer(tiny_tokenizer)
    bos = tokenizer.bos_token_id
    assert bos_to_prepend(tokenizer) == bos
    example = tokenize_record(RECORD, tokenizer, "chatml", max_len=None)
    assert example is not None
    assert example.input_ids[0] == bos and example.labels[0] == IGNORE_INDEX
    assert example.input_ids.count(bos) == 1


def test_bos_written_by_the_chat_template_is_not_duplicated(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    tokenizer = _bos_tokenizer(tiny_tokenizer)
    tokenizer.chat_template = "{{ bos_token }}" + tiny_tokenizer.chat_template
    example = tokenize_record(RECORD, tokenizer, "model", max_len=None)
    assert example is not None
    assert example.input_ids[0] == tokenizer.bos_token_id
    assert example.input_ids.count(tokenizer.bos_token_id) == 1


def test_truncation_keeps_the_first_tokens(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    full = tokenize_record(RECORD, tiny_tokenizer, "chatml", max_len=None)
    assert full is not None
    first_target = next(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    cut = first_target + 2
    short = tokenize_record(RECORD, tiny_tokenizer, "chatml", max_len=cut)
    assert short is not None
    assert short.truncated and not full.truncated
    assert short.input_ids == full.input_ids[:cut]
    assert short.labels == full.labels[:cut]
    assert short.n_loss_tokens == 2


def test_example_without_a_surviving_target_is_dropped(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    full = tokenize_record(RECORD, tiny_tokenizer, "chatml", max_len=None)
    assert full is not None
    first_target = next(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    assert tokenize_record(RECORD, tiny_tokenizer, "chatml", max_len=first_target) is None
    assert tokenize_record(RECORD, tiny_tokenizer, "chatml", max_len=first_target + 1) is not None


def test_stats_count_examples_tokens_truncated_and_dropped(
    chat_records: list[ChatRecord], tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    records = chat_records[:30]
    full, _ = tokenize_records(records, tiny_tokenizer, "chatml", max_len=None)
    lengths = [len(e) for e in full]
    starts = [next(i for i, label in enumerate(e.labels) if label != IGNORE_INDEX) for e in full]
    max_len = sorted(lengths)[len(lengths) // 2]
    examples, stats = tokenize_records(records, tiny_tokenizer, "chatml", max_len=max_len)
    assert stats.n_dropped == sum(start >= max_len for start in starts)
    assert stats.n_examples == len(examples) == len(records) - stats.n_dropped
    assert stats.n_truncated == sum(n > max_len for n, s in zip(lengths, starts, strict=True) if s < max_len)
    assert stats.n_tokens == sum(len(e) for e in examples) <= max_len * len(examples)
    assert stats.n_loss_tokens == sum(e.n_loss_tokens for e in examples)
    assert 0 < stats.n_truncated < stats.n_examples
