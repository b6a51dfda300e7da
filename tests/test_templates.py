"""Chat templates render exact strings and mark exactly the assistant answers (+ end marker) as targets."""

from __future__ import annotations

import copy
import itertools

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from skillmerge.data.records import ChatRecord, Message
from skillmerge.data.templates import check_tokenizer, get_template
from skillmerge.errors import TemplateError

RECORD = ChatRecord(
    (
        Message("system", "Be brief."),
        Message("user", "What is 2 plus 2?"),
        Message("assistant", "4."),
        Message("user", "And 3 plus 3?"),
        Message("assistant", "6."),
    ),
    id="two-turns",
)


def _targets(segments: list[tuple[str, bool]]) -> list[str]:
    return [text for text, is_target in segments if is_target]


def _plain_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE without any special token, EOS or chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["hello world"] * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, name_or_path="plain-bpe")


def test_unknown_template_is_refused() -> None:
    with pytest.raises(TemplateError) as info:
        get_template("x")
    assert str(info.value) == "unknown chat template 'x'; choose one of: chatml, model, tulu"


def test_tulu_renders_open_instruct_format(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    segments = get_template("tulu").segments(RECORD, tiny_tokenizer)
    assert "".join(text for text, _ in segments) == (
        "<|system|>\nBe brief.\n<|user|>\nWhat is 2 plus 2?\n<|assistant|>\n4.</s>\n"
        "<|user|>\nAnd 3 plus 3?\n<|assistant|>\n6.</s>\n"
    )
    assert _targets(segments) == ["4.</s>", "6.</s>"]


def test_chatml_renders_im_markers_and_targets_answers(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    segments = get_template("chatml").segments(RECORD, tiny_tokenizer)
    assert "".join(text for text, _ in segments) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2 plus 2?<|im_end|>\n"
        "<|im_start|>assistant\n4.<|im_end|>\n<|im_start|>user\nAnd 3 plus 3?<|im_end|>\n"
        "<|im_start|>assistant\n6.<|im_end|>\n"
    )
    assert _targets(segments) == ["4.<|im_end|>", "6.<|im_end|>"]
    # segments alternate, so each target is one contiguous span
    assert all(a[1] != b[1] for a, b in itertools.pairwise(segments))


def test_model_template_equals_chatml_for_a_chatml_tokenizer(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    model_segments = get_template("model").segments(RECORD, tiny_tokenizer)
    assert model_segments == get_template("chatml").segments(RECORD, tiny_tokenizer)


def test_model_template_keeps_trailing_user_turn_as_context(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    record = ChatRecord((*RECORD.messages, Message("user", "Thanks!")))
    segments = get_template("model").segments(record, tiny_tokenizer)
    assert segments[-1] == ("\n<|im_start|>user\nThanks!<|im_end|>\n", False)
    assert _targets(segments) == ["4.<|im_end|>", "6.<|im_end|>"]


def test_template_that_rewrites_history_is_refused(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    tokenizer = copy.deepcopy(tiny_tokenizer)
    # Renders only the last message: earlier turns vanish, so there is no incremental prefix.
    tokenizer.chat_template = "{{ messages[-1]['content'] }}{% if add_generation_prompt %}>>{% endif %}"
    with pytest.raises(TemplateError, match=r"rewrites earlier turns of record 'two-turns' \(message 2\)"):
        get_template("model").segments(RECORD, tokenizer)


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("tulu", "<|assistant|>\n"),
        ("chatml", "<|im_start|>assistant\n"),
        ("model", "<|im_start|>assistant\n"),
    ],
)
def test_render_prompt_ends_with_generation_marker(
    name: str, suffix: str, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    prompt_messages = RECORD.messages[:4]
    template = get_template(name)
    prompt = template.render_prompt(prompt_messages, tiny_tokenizer)
    assert prompt.endswith("And 3 plus 3?" + ("\n" if name == "tulu" else "<|im_end|>\n") + suffix)
    # what training shows before the second answer is exactly the inference prompt
    full = template.segments(RECORD, tiny_tokenizer)
    before_answer = "".join(text for text, _ in full[:3])
    assert before_answer == prompt


def test_tulu_strips_contents_like_open_instruct(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    record = ChatRecord((Message("user", "  hi \n"), Message("assistant", " yes  ")))
    assert get_template("tulu").render(record, tiny_tokenizer) == "<|user|>\nhi\n<|assistant|>\nyes</s>\n"


def test_check_tokenizer_accepts_tiny_tokenizer_for_all_templates(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    for name in ("chatml", "tulu", "model"):
        check_tokenizer(name, tiny_tokenizer)


def test_chatml_needs_im_markers_as_single_tokens() -> None:
    with pytest.raises(TemplateError) as info:
        check_tokenizer("chatml", _plain_tokenizer())
    assert str(info.value) == (
        "tokenizer plain-bpe cannot render chat template 'chatml': missing <|im_start|>, <|im_end|>"
    )


@pytest.mark.parametrize(("name", "missing"), [("tulu", "eos_token"), ("model", "chat_template")])
def test_tokenizer_without_eos_or_chat_template_is_refused(name: str, missing: str) -> None:
    with pytest.raises(
        TemplateError, match=rf"^tokenizer plain-bpe cannot render .*'{name}': missing {missing}$"
    ):
        check_tokenizer(name, _plain_tokenizer())


def test_tulu_without_tokenizer_eos_is_refused_on_render() -> None:
    with pytest.raises(TemplateError, match="eos_token"):
        get_template("tulu").segments(RECORD, _plain_tokenizer())
