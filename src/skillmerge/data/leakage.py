"""Train/eval contamination: training prompts that equal an evaluation prompt.

Every user turn of every training record is compared with every evaluation prompt, twice:

- ``exact``: the strings are identical;
- ``normalised``: they differ but ``normalise_prompt(a) == normalise_prompt(b)`` (case and whitespace only).

Lookups go through a dict keyed by the normalised text, so the check costs O(total user turns + eval prompts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from skillmerge.data.prompts import PromptItem
from skillmerge.data.records import ChatRecord


def normalise_prompt(text: str) -> str:
    """Casefold, collapse every whitespace run to one space, strip the ends."""
    return " ".join(text.casefold().split())


@dataclass(frozen=True, slots=True)
class Leak:
    """One training user turn that matches one evaluation prompt.

    ``train_index`` is the record's position in the training list (the JSONL line is ``train_index + 1``
    when the file has no blank lines); ``turn`` counts user messages from 0 (0 is :attr:`ChatRecord.prompt`).
    """

    train_index: int
    train_id: str | None
    turn: int
    kind: Literal["exact", "normalised"]
    eval_index: int
    eval_id: str | None
    eval_source: str | None
    train_text: str
    eval_text: str


@dataclass
class LeakReport:
    n_train: int
    n_eval: int
    leaks: list[Leak] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.leaks

    @property
    def leaked_train_indices(self) -> list[int]:
        """Sorted positions of training records with at least one leak."""
        return sorted({leak.train_index for leak in self.leaks})

    def count(self, kind: Literal["exact", "normalised"]) -> int:
        return sum(1 for leak in self.leaks if leak.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_train": self.n_train,
            "n_eval": self.n_eval,
            "n_leaks": len(self.leaks),
            "n_exact": self.count("exact"),
            "n_normalised": self.count("normalised"),
            "n_leaked_records": len(self.leaked_train_indices),
            "leaks": [asdict(leak) for leak in self.leaks],
        }


def find_leaks(train_records: Iterable[ChatRecord], eval_prompts: Iterable[str | PromptItem]) -> LeakReport:
    """Report every (training user turn, evaluation prompt) pair that matches exactly or after normalising."""
    by_norm: dict[str, list[tuple[int, str, str | None, str | None]]] = defaultdict(list)
    n_eval = 0
    for index, item in enumerate(eval_prompts):
        n_eval += 1
        if isinstance(item, PromptItem):
            by_norm[normalise_prompt(item.prompt)].append((index, item.prompt, item.id, item.source))
        else:
            by_norm[normalise_prompt(item)].append((index, item, None, None))
    report = LeakReport(n_train=0, n_eval=n_eval)
    for train_index, record in enumerate(train_records):
        report.n_train += 1
        user_turns = [m.content for m in record.messages if m.role == "user"]
        for turn, text in enumerate(user_turns):
            for eval_index, eval_text, eval_id, eval_source in by_norm.get(normalise_prompt(text), ()):
                kind: Literal["exact", "normalised"] = "exact" if text == eval_text else "normalised"
                report.leaks.append(
                    Leak(
                        train_index, record.id, turn, kind, eval_index, eval_id, eval_source, text, eval_text
                    )
                )
    return report
