"""Tokenize chat records into ``input_ids`` and assistant-only ``labels``.

Labels follow the Hugging Face convention: aligned with ``input_ids`` (the model shifts them), with
``labels[t] = input_ids[t]`` on assistant targets and ``-100`` (ignored) everywhere else. In a multi-turn
conversation every assistant turn is a target.

Segments from :mod:`skillmerge.data.templates` are tokenized one by one, so a token never straddles a
prompt/target boundary and the labels are exact. This also matches inference, where the prompt ends at the
generation marker and the answer starts a fresh token.

BOS: segments are tokenized with ``add_special_tokens=False``. If the tokenizer adds a BOS token by default
(``tokenizer("a")`` starts with ``bos_token_id``, as Llama tokenizers do) we prepend it once, unless the
rendered text already starts with the BOS string (model templates that write ``{{ bos_token }}``), so it is
never duplicated. Tokenizers without BOS (GPT-2 style byte BPE, SmolLM2, Qwen) get none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from transformers import PreTrainedTokenizerBase

from skillmerge.data.records import ChatRecord
from skillmerge.data.templates import ChatTemplate, get_template

IGNORE_INDEX = -100


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    """One conversation as token ids with aligned labels (``-100`` = not trained on)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    truncated: bool = False
    id: str | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_loss_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class TokenizeStats:
    """Counts over a tokenization run; tokens are counted after truncation, on kept examples only."""

    n_examples: int = 0
    n_tokens: int = 0
    n_loss_tokens: int = 0
    n_truncated: int = 0
    n_dropped: int = 0

    def add(self, other: TokenizeStats) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def bos_to_prepend(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The BOS id when the tokenizer adds one by default, else ``None`` (see the module docstring)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    ids = tokenizer("a")["input_ids"]
    return bos if ids and ids[0] == bos else None


def _tokenize(
    record: ChatRecord,
    tokenizer: PreTrainedTokenizerBase,
    template: ChatTemplate,
    max_len: int | None,
    bos: int | None,
) -> TokenizedExample | None:
    segments = template.segments(record, tokenizer)
    # verbose=False: no "sequence length is longer than the maximum" warning; max_len handles length here
    pieces = tokenizer([text for text, _ in segments], add_special_tokens=False, verbose=False)["input_ids"]
    input_ids: list[int] = []
    labels: list[int] = []
    if bos is not None and not (tokenizer.bos_token and segments[0][0].startswith(tokenizer.bos_token)):
        input_ids.append(bos)
        labels.append(IGNORE_INDEX)
    for (_, is_target), ids in zip(segments, pieces, strict=True):
        input_ids.extend(ids)
        labels.extend(ids if is_target else [IGNORE_INDEX] * len(ids))
    truncated = max_len is not None and len(input_ids) > max_len
    if truncated:
        input_ids, labels = input_ids[:max_len], labels[:max_len]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return TokenizedExample(tuple(input_ids), tuple(labels), truncated, record.id)


def tokenize_record(
    record: ChatRecord,
    tokenizer: PreTrainedTokenizerBase,
    template: str | ChatTemplate,
    max_len: int | None,
) -> TokenizedExample | None:
    """Tokenize one record; ``None`` when it is dropped.

    Truncation policy: keep the first ``max_len`` tokens (the start of the conversation, so the context of
    each kept answer is intact); a truncated answer keeps its first tokens as targets. If no target token
    survives, the example is dropped (``None``): it would contribute nothing but compute.
    """
    return _tokenize(record, tokenizer, get_template(template), max_len, bos_to_prepend(tokenizer))


def iter_tokenized(
    records: Iterable[ChatRecord],
    tokenizer: PreTrainedTokenizerBase,
    template: str | ChatTemplate,
    max_len: int | None,
    stats: TokenizeStats,
) -> Iterator[TokenizedExample]:
    """Lazily tokenize records (policy as in :func:`tokenize_record`), adding counts to ``stats``."""
    chat_template = get_template(template)
    bos = bos_to_prepend(tokenizer)
    for record in records:
        example = _tokenize(record, tokenizer, chat_template, max_len, bos)
        if example is None:
            stats.n_dropped += 1
            continue
        stats.n_examples += 1
        stats.n_tokens += len(example)
        stats.n_loss_tokens += example.n_loss_tokens
        stats.n_truncated += int(example.truncated)
        yield example


def tokenize_records(
    records: Iterable[ChatRecord],
    tokenizer: PreTrainedTokenizerBase,
    template: str | ChatTemplate,
    max_len: int | None,
) -> tuple[list[TokenizedExample], TokenizeStats]:
    """Tokenize many records (policy as in :func:`tokenize_record`); returns kept examples and counts."""
    stats = TokenizeStats()
    examples = list(iter_tokenized(records, tokenizer, template, max_len, stats))
    return examples, stats
