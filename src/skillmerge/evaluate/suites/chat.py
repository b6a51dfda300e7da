"""``chat``: score a model on held-out chat records (a skill's own validation file), by normalised exact
match and token F1 of its reply against the record's last assistant turn.

Each record is cut at its LAST assistant turn: everything before it (system, earlier user/assistant turns,
the final user turn) is the prompt, that turn's content the reference. Records without an assistant turn
are refused with one line naming the file and record. Generation is greedy (``max_new_tokens``, default
128). Metrics: ``exact_match`` (SQuAD normalisation, see :mod:`~skillmerge.evaluate.suites.science`) and
``f1`` (token F1); ``score = f1`` (graded, so a nearly-right reply beats an unrelated one). The suite has no
paper category: :func:`skillmerge.evaluate.paper_scores` lists it under ``unaggregated``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from skillmerge.errors import UsageError
from skillmerge.evaluate.suites import register_suite, select_items
from skillmerge.evaluate.suites.base import (
    Conversation,
    GenerationParams,
    ItemResult,
    ModelBackend,
    Suite,
    SuiteResult,
)
from skillmerge.evaluate.suites.science import exact_match, token_f1


@dataclass(frozen=True)
class ChatItem:
    id: str
    prompt: Conversation
    reference: str


def chat_items(path: str | Path) -> list[ChatItem]:
    """One item per record of ``path``: the conversation before its last assistant turn, and that turn."""
    from skillmerge.data.sources import load_records

    items = []
    for index, record in enumerate(load_records(str(path))):
        roles = [m.role for m in record.messages]
        if "assistant" not in roles:
            raise UsageError(f"{path}: record {record.id or index + 1} has no assistant turn to score")
        last = len(roles) - 1 - roles[::-1].index("assistant")
        prompt = [{"role": m.role, "content": m.content} for m in record.messages[:last]]
        items.append(ChatItem(record.id or f"{index}", prompt, record.messages[last].content))
    return items


@register_suite("chat")
class ChatSuite(Suite):
    """Held-out chat records, reply vs the last assistant turn (``score`` = token F1)."""

    name = "chat"

    def __init__(self, *, path: str | Path | Sequence[str | Path], max_new_tokens: int = 128) -> None:
        if max_new_tokens < 1:
            raise UsageError("chat: max_new_tokens must be ≥ 1")
        self.paths = [str(path)] if isinstance(path, str | Path) else [str(p) for p in path]
        if not self.paths:
            raise UsageError("chat: no path given")
        self.max_new_tokens = max_new_tokens

    def run(self, backend: ModelBackend, *, limit: int | None = None, seed: int = 0) -> SuiteResult:
        source = [item for p in self.paths for item in chat_items(p)]
        if not source:
            raise UsageError(f"chat: no records in {', '.join(self.paths)}")
        items = select_items(source, limit, seed)
        params = GenerationParams(max_new_tokens=self.max_new_tokens)
        completions = backend.generate([i.prompt for i in items], params)
        results, em_sum, f1_sum = [], 0.0, 0.0
        for item, outs in zip(items, completions, strict=True):
            em, f1 = exact_match(outs[0], [item.reference]), token_f1(outs[0], [item.reference])
            em_sum, f1_sum = em_sum + em, f1_sum + f1
            results.append(
                ItemResult(
                    id=item.id,
                    prompt=item.prompt[-1]["content"] if item.prompt else "",
                    completion=outs[0],
                    verdict="exact" if em else ("partial" if f1 > 0 else "wrong"),
                    score=f1,
                    reason=f"EM {em:.0f}, F1 {f1:.2f} vs the last assistant turn",
                    meta={"reference": item.reference, "turns": len(item.prompt), "em": em},
                )
            )
        n = len(items)
        metrics = {"exact_match": em_sum / n, "f1": f1_sum / n, "score": f1_sum / n}
        meta = {"paths": self.paths, "n_items": n, "total_items": len(source), "limit": limit, "seed": seed}
        return SuiteResult(self.name, metrics, results, meta)
