"""Evaluation prompts: one small immutable item per benchmark question.

Evaluation sets (XSTest, HarmBench, Do-Not-Answer, HumanEval) are prompts without reference chats, so they get
their own type instead of :class:`~skillmerge.data.records.ChatRecord`. ``label`` is the set's own verdict
(``safe``/``unsafe``) and ``category`` its finer grouping (XSTest type, Do-Not-Answer risk area); either may
be ``None``. ``meta`` holds everything else a suite needs (HumanEval tests, entry point, ...), read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class PromptItem:
    id: str
    prompt: str
    source: str
    label: str | None = None
    category: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        # A read-only view: items are shared between suites and must not change under them.
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "source": self.source,
            "label": self.label,
            "category": self.category,
            "meta": dict(self.meta),
        }
