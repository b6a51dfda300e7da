"""The contract between evaluation suites and model backends (lm-eval style: tasks are data found through a
registry; models sit behind a tiny interface).

A backend turns conversations into completions (``generate``) and scores continuations
(``loglikelihood``); it owns batching, chat templates, devices and seeds. A suite owns its items, how they are
prompted, and how completions are judged; it never touches a model directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

Conversation = list[dict[str, str]]  # [{"role": "user", "content": "..."}, ...]


@dataclass(frozen=True)
class GenerationParams:
    """How to sample: greedy by default (temperature 0); ``n`` samples per prompt for pass@k."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int = 0


class ModelBackend(Protocol):
    """What a suite may ask of a model."""

    name: str

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[list[str]]:
        """``params.n`` completions per conversation (the assistant reply only, stop sequences cut off)."""
        ...

    def loglikelihood(self, requests: Sequence[tuple[Conversation, str]]) -> list[float]:
        """Sum of log p(continuation | conversation rendered with the generation prompt), per request."""
        ...


@dataclass
class ItemResult:
    """One evaluated item: what was asked, what came back, and the verdict with its reason."""

    id: str
    prompt: str
    completion: str | list[str]
    verdict: str
    score: float
    reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SuiteResult:
    """A suite's metrics (higher is better unless the name says otherwise) and its per-item results."""

    suite: str
    metrics: dict[str, float]
    items: list[ItemResult]
    meta: dict[str, Any] = field(default_factory=dict)


class Suite(ABC):
    """An evaluation suite; subclasses set ``name`` and implement :meth:`run`."""

    name: str = ""

    @abstractmethod
    def run(self, backend: ModelBackend, *, limit: int | None = None, seed: int = 0) -> SuiteResult:
        """Evaluate ``backend``; ``limit`` subsamples items with ``seed`` (state the sizes in ``meta``)."""


SuiteFactory = Callable[..., Suite]
