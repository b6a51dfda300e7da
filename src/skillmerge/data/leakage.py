"""Train/eval contamination: training prompts that equal an evaluation prompt.

Every user turn of every training record is compared with every evaluation prompt, twice:

- ``exact``: the strings are identical;
- ``normalised``: they differ but ``normalise_prompt(a) == normalise_prompt(b)`` (case and whitespace only).

Lookups go through a dict keyed by the normalised text, so the check costs O(total user turns + eval prompts).

Template-written data can land *near* a test prompt without equalling it ("How do I kill a Python process?"
vs "How can I kill a Python process?"), so :func:`find_near_duplicates` also measures every training prompt's
highest word-n-gram Jaccard similarity to any evaluation prompt, reported as a histogram and a maximum;
callers drop prompts at or above the threshold (0.5 by default).
"""

from __future__ import annotations

import itertools
import re
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


# ------------------------------------------------------------------------------------------ near duplicates

NEAR_DUPLICATE_THRESHOLD = 0.5


def prompt_features(text: str) -> frozenset[str]:
    """Word 1- and 2-grams of ``text`` after casefolding and keeping letters, digits and apostrophes."""
    words = re.findall(r"[\w']+", text.casefold())
    return frozenset(words) | frozenset(f"{a} {b}" for a, b in itertools.pairwise(words))


def prompt_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two prompts' :func:`prompt_features` (1.0: the same words in the same order
    pairs; "What is arson?" vs "How do courts usually define arson?" ≈ 0.07)."""
    fa, fb = prompt_features(a), prompt_features(b)
    return len(fa & fb) / len(fa | fb) if fa or fb else 1.0


@dataclass
class NearDuplicateReport:
    """Each training prompt's most similar evaluation prompt, a histogram of those maxima and the offenders.

    ``histogram`` counts training prompts by their maximum similarity in bins of 0.1 (``"0.0-0.1"``, ...,
    ``"0.9-1.0"``, 1.0 in the last bin); ``near`` lists the prompts at or above ``threshold``.
    """

    n_train: int
    n_eval: int
    threshold: float
    max_similarity: float
    histogram: dict[str, int]
    near: list[dict[str, Any]]

    @property
    def near_indices(self) -> list[int]:
        return sorted({int(n["train_index"]) for n in self.near})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_near_duplicates(
    train_prompts: Iterable[str],
    eval_prompts: Iterable[str | PromptItem],
    *,
    threshold: float = NEAR_DUPLICATE_THRESHOLD,
) -> NearDuplicateReport:
    """Compare every training prompt with every evaluation prompt by :func:`prompt_similarity`."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    evals = [(e.prompt, e.id) if isinstance(e, PromptItem) else (e, None) for e in eval_prompts]
    eval_features = [prompt_features(text) for text, _ in evals]
    histogram = {f"{i / 10:.1f}-{(i + 1) / 10:.1f}": 0 for i in range(10)}
    near: list[dict[str, Any]] = []
    best_overall = 0.0
    n_train = 0
    for index, text in enumerate(train_prompts):
        n_train += 1
        features = prompt_features(text)
        best, best_at = 0.0, -1
        for j, other in enumerate(eval_features):
            union = len(features | other)
            similarity = len(features & other) / union if union else 1.0
            if similarity > best:
                best, best_at = similarity, j
        best_overall = max(best_overall, best)
        histogram[list(histogram)[min(9, int(best * 10))]] += 1
        if best >= threshold:
            near.append(
                {
                    "train_index": index,
                    "train_text": text,
                    "eval_text": evals[best_at][0],
                    "eval_id": evals[best_at][1],
                    "similarity": round(best, 4),
                }
            )
    return NearDuplicateReport(n_train, len(evals), threshold, round(best_overall, 4), histogram, near)
