"""Chat templates that render a conversation into labelled text segments.

A template turns messages into ``[(text, is_target), ...]``: the concatenation of the texts is the exact
string the model sees, and ``is_target`` marks the spans it is trained to produce (every assistant turn's
content plus its end marker). Labels are therefore exact by construction, not recovered afterwards by
searching for markers in token ids.

Three templates, by name (:func:`get_template`):

- ``tulu`` (open-instruct)::

      <|system|>\\n{system}\\n<|user|>\\n{user}\\n<|assistant|>\\n{answer}{eos}\\n

  contents are stripped as open-instruct does; target = ``{answer}{eos}``.
- ``chatml``::

      <|im_start|>{role}\\n{content}<|im_end|>\\n

  target = ``{answer}<|im_end|>``.
- ``model``: the tokenizer's own ``chat_template`` (``tokenizer.apply_chat_template``). Segments come from
  incremental rendering: with ``P_i`` = render(messages[:i], generation prompt) and ``F_i`` =
  render(messages[:i+1]) for an assistant message ``i``, the target is ``F_i[len(P_i):]``; whitespace trailing
  the end marker is kept as context, not target. Templates that rewrite earlier turns (so ``P_i`` is not a
  prefix of ``F_i``) are refused.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from skillmerge.data.records import ChatRecord, Message
from skillmerge.errors import TemplateError

Segment = tuple[str, bool]
Conversation = ChatRecord | Sequence[Message]


def _messages(conversation: Conversation) -> tuple[Message, ...]:
    return conversation.messages if isinstance(conversation, ChatRecord) else tuple(conversation)


def _describe(conversation: Conversation) -> str:
    if isinstance(conversation, ChatRecord) and conversation.id is not None:
        return f"record {conversation.id!r}"
    return "a record"


def tokenizer_name(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short name for messages: the path or hub id it was loaded from, else its class."""
    return getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__


def _merge(segments: list[Segment]) -> list[Segment]:
    """Drop empty texts and join neighbours with the same flag, so segments alternate."""
    out: list[Segment] = []
    for text, is_target in segments:
        if not text:
            continue
        if out and out[-1][1] == is_target:
            out[-1] = (out[-1][0] + text, is_target)
        else:
            out.append((text, is_target))
    return out


class ChatTemplate(ABC):
    """Renders conversations for one chat format; stateless, the tokenizer is passed in."""

    name: str

    @abstractmethod
    def segments(
        self, conversation: Conversation, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> list[Segment]:
        """The conversation as ``[(text, is_target)]``; texts concatenate to the full rendered string."""

    @abstractmethod
    def render_prompt(
        self, conversation: Conversation, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> str:
        """The conversation followed by the assistant generation prompt, for inference."""

    @abstractmethod
    def missing(self, tokenizer: PreTrainedTokenizerBase) -> list[str]:
        """What the tokenizer lacks to render this template (empty when it is usable)."""

    def render(self, conversation: Conversation, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
        """The full training text (all segments joined)."""
        return "".join(text for text, _ in self.segments(conversation, tokenizer))


class TuluTemplate(ChatTemplate):
    name = "tulu"

    @staticmethod
    def _eos(tokenizer: PreTrainedTokenizerBase | None) -> str:
        if tokenizer is None or not tokenizer.eos_token:
            raise TemplateError("chat template 'tulu' needs a tokenizer with an eos_token")
        return str(tokenizer.eos_token)

    def segments(
        self, conversation: Conversation, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> list[Segment]:
        eos = self._eos(tokenizer)
        out: list[Segment] = []
        for message in _messages(conversation):
            if message.role == "assistant":
                out.append(("<|assistant|>\n", False))
                out.append((message.content.strip() + eos, True))
                out.append(("\n", False))
            else:
                out.append((f"<|{message.role}|>\n{message.content.strip()}\n", False))
        return _merge(out)

    def render_prompt(
        self, conversation: Conversation, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> str:
        return self.render(conversation, tokenizer) + "<|assistant|>\n"

    def missing(self, tokenizer: PreTrainedTokenizerBase) -> list[str]:
        return [] if tokenizer.eos_token else ["eos_token"]


class ChatMLTemplate(ChatTemplate):
    name = "chatml"
    special_tokens = ("<|im_start|>", "<|im_end|>")

    def segments(
        self, conversation: Conversation, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> list[Segment]:
        out: list[Segment] = []
        for message in _messages(conversation):
            out.append((f"<|im_start|>{message.role}\n", False))
            if message.role == "assistant":
                out.append((message.content + "<|im_end|>", True))
                out.append(("\n", False))
            else:
                out.append((message.content + "<|im_end|>\n", False))
        return _merge(out)

    def render_prompt(
        self, conversation: Conversation, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> str:
        return self.render(conversation, tokenizer) + "<|im_start|>assistant\n"

    def missing(self, tokenizer: PreTrainedTokenizerBase) -> list[str]:
        # "ONE token" matters: a marker split into pieces would be learned as ordinary text and could never
        # serve as a stop token.
        missing = []
        for token in self.special_tokens:
            ids = tokenizer.encode(token, add_special_tokens=False)
            if token not in tokenizer.get_vocab() or len(ids) != 1:
                missing.append(token)
        return missing


class ModelTemplate(ChatTemplate):
    """The tokenizer's own Jinja chat template."""

    name = "model"

    @staticmethod
    def _apply(
        tokenizer: PreTrainedTokenizerBase | None,
        messages: Sequence[Message],
        add_generation_prompt: bool,
        where: str,
    ) -> str:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            name = "no tokenizer" if tokenizer is None else f"tokenizer {tokenizer_name(tokenizer)}"
            raise TemplateError(f"chat template 'model': {name} has no chat_template")
        conversation: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in messages]
        try:
            text = tokenizer.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except Exception as err:  # Jinja raises its own exception types (raise_exception in templates)
            raise TemplateError(
                f"chat template 'model' of {tokenizer_name(tokenizer)} failed on {where}: {err}"
            ) from None
        return str(text)

    def segments(
        self, conversation: Conversation, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> list[Segment]:
        messages = _messages(conversation)
        where = _describe(conversation)
        name = "" if tokenizer is None else tokenizer_name(tokenizer)
        out: list[Segment] = []
        emitted = ""
        for i, message in enumerate(messages):
            if message.role != "assistant":
                continue
            prompt = self._apply(tokenizer, messages[:i], True, where)
            full = self._apply(tokenizer, messages[: i + 1], False, where)
            if not prompt.startswith(emitted) or not full.startswith(prompt):
                raise TemplateError(
                    f"chat template 'model' of {name} rewrites earlier turns of {where} (message {i}): "
                    "rendering is not incremental, so assistant labels cannot be derived; "
                    "use --template chatml or tulu"
                )
            target = full[len(prompt) :]
            body = target.rstrip()
            if not body:
                raise TemplateError(
                    f"chat template 'model' of {name} renders no text for {where} message {i}"
                )
            out.append((prompt[len(emitted) :], False))
            out.append((body, True))
            out.append((target[len(body) :], False))
            emitted = full
        if len(messages) and messages[-1].role != "assistant":
            full = self._apply(tokenizer, messages, False, where)
            if not full.startswith(emitted):
                raise TemplateError(
                    f"chat template 'model' of {name} rewrites earlier turns of {where}: "
                    "rendering is not incremental; use --template chatml or tulu"
                )
            out.append((full[len(emitted) :], False))
        return _merge(out)

    def render_prompt(
        self, conversation: Conversation, tokenizer: PreTrainedTokenizerBase | None = None
    ) -> str:
        return self._apply(tokenizer, _messages(conversation), True, _describe(conversation))

    def missing(self, tokenizer: PreTrainedTokenizerBase) -> list[str]:
        return [] if getattr(tokenizer, "chat_template", None) else ["chat_template"]


TEMPLATES: dict[str, ChatTemplate] = {t.name: t for t in (ChatMLTemplate(), ModelTemplate(), TuluTemplate())}


def get_template(name: str | ChatTemplate) -> ChatTemplate:
    """The template registered as ``name`` (a template object is returned unchanged)."""
    if isinstance(name, ChatTemplate):
        return name
    try:
        return TEMPLATES[name]
    except KeyError:
        raise TemplateError(
            f"unknown chat template {name!r}; choose one of: {', '.join(sorted(TEMPLATES))}"
        ) from None


def check_tokenizer(template: str | ChatTemplate, tokenizer: PreTrainedTokenizerBase) -> None:
    """Raise :class:`TemplateError` naming the tokenizer and what it lacks for ``template``."""
    template = get_template(template)
    missing = template.missing(tokenizer)
    if missing:
        raise TemplateError(
            f"tokenizer {tokenizer_name(tokenizer)} cannot render chat template {template.name!r}: "
            f"missing {', '.join(missing)}"
        )
