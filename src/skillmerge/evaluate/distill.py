"""Self-distilled chat data: a model's own greedy answers to prompts, as training records.

Used for "general" data that needs no download: answers of θ_G to benign prompts keep θ_G's own style when
they are replayed during continued finetuning, and held-out ones measure how far a model drifted from θ_G
(perplexity on θ_G's answers). An answer cut by ``max_new_tokens`` is trimmed back to its last full sentence
(a record must never teach the model to stop mid-sentence); answers left empty are dropped and counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from skillmerge.data.records import ChatRecord, Message
from skillmerge.evaluate.suites.base import GenerationParams, ModelBackend

_SENTENCE_END = re.compile(r"[.!?)\]`](?=\s|$)|\n")


@dataclass
class DistillReport:
    records: list[ChatRecord]
    trimmed: int
    dropped: list[str]


def trim_to_sentence(text: str) -> str:
    """``text`` up to and including its last sentence end ('.', '!', '?', a closing bracket or a newline)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].rstrip() if ends else ""


def self_distill(
    backend: ModelBackend,
    prompts: Sequence[tuple[str, str]],
    *,
    max_new_tokens: int = 128,
    source: str = "self-distilled",
    min_chars: int = 20,
) -> DistillReport:
    """Greedy answers of ``backend`` to ``prompts`` (``(id, prompt)`` pairs) as single-turn chat records.

    Answers that hit the token limit are trimmed to their last full sentence; an answer shorter than
    ``min_chars`` after trimming is dropped (its id is in ``dropped``).
    """
    conversations = [[{"role": "user", "content": prompt}] for _, prompt in prompts]
    params = GenerationParams(max_new_tokens=max_new_tokens)
    generate_ids = getattr(backend, "generate_ids", None)
    if generate_ids is not None:  # token ids tell exactly which answers ran into the limit
        ids = generate_ids([backend.encode_prompt(c) for c in conversations], params)  # type: ignore[attr-defined]
        replies = [[backend._finish_text(row[0], ())] for row in ids]  # type: ignore[attr-defined]
        cut = [len(row[0]) >= max_new_tokens for row in ids]
    else:  # a backend that only returns text: treat every answer as possibly cut
        replies = backend.generate(conversations, params)
        cut = [True] * len(replies)
    records: list[ChatRecord] = []
    dropped: list[str] = []
    trimmed = 0
    for (item_id, prompt), samples, hit_limit in zip(prompts, replies, cut, strict=True):
        answer = (samples[0] if samples else "").strip()
        if hit_limit:
            cut = trim_to_sentence(answer)
            trimmed += cut != answer
            answer = cut
        if len(answer) < min_chars:
            dropped.append(item_id)
            continue
        messages = (Message("user", prompt), Message("assistant", answer))
        records.append(ChatRecord(messages, id=item_id, source=source))
    return DistillReport(records, trimmed, dropped)
