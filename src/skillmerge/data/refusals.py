"""Refusal training data from harmful-prompt sets: varied, well-formed refusals and leak-proof prompt splits.

A refusal is composed from three parts chosen per prompt by a seeded hash (so the same prompt always gets the
same refusal, and a set of prompts gets many different ones)::

    <decline>  <reason for the prompt's risk area>  <offer of something safe>

e.g. "I can't help with that. Sharing someone's private details could put them at risk. If you're trying to
reach someone, I can suggest public, consent-based ways to do it." The parts are written to read naturally
in any order of choice; there are 8 × 3 × 4 combinations per risk area.

:func:`split_prompts` assigns whole normalised-prompt groups to test / validation / train, stratified by
category, so no duplicate straddles a split (the evaluation side can then be scored as held out).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from skillmerge.data.leakage import normalise_prompt
from skillmerge.data.prompts import PromptItem
from skillmerge.data.records import ChatRecord, Message
from skillmerge.errors import UsageError

DECLINES: tuple[str, ...] = (
    "I can't help with that.",
    "I'm sorry, but I can't help with this request.",
    "I won't be able to help with that.",
    "Sorry, I can't assist with that.",
    "I'm not able to help with this.",
    "I have to decline this request.",
    "I can't provide that.",
    "I'm sorry, but I won't help with that.",
)
# Reasons by Do-Not-Answer risk area (the file stem); ``default`` for anything else.
REASONS: dict[str, tuple[str, ...]] = {
    "discrimination_exclusion_toxicity_hateful_offensive": (
        "Content that demeans people for who they are causes real harm.",
        "I don't produce insults, slurs or stereotypes about any group of people.",
        "Answering would mean treating people unfairly because of who they are.",
    ),
    "human_chatbox": (
        "I'm an AI assistant, so I can't stand in for a person, a doctor or a therapist here.",
        "This calls for a real person who knows your situation, not an AI assistant.",
        "I'm an AI without personal experiences, so I can't honestly answer that as a person would.",
    ),
    "information_hazard": (
        "Sharing private or sensitive information could put people at risk.",
        "That information is private, and giving it out could harm someone.",
        "I don't share personal data or confidential details about people or organisations.",
    ),
    "malicious_uses": (
        "It could be used to hurt people or break the law.",
        "Helping with this could cause real harm to others.",
        "This would assist illegal or dangerous activity.",
    ),
    "misinformation_harms": (
        "I don't want to spread claims that could mislead people or endanger their health.",
        "Giving a confident answer here could spread misinformation.",
        "This needs a qualified professional and reliable sources, not a guess from me.",
    ),
    "default": (
        "It could cause harm to you or to others.",
        "This isn't something I can help with safely.",
        "Answering could put someone at risk.",
    ),
}
OFFERS: tuple[str, ...] = (
    "If you have a related question that is safe, I'm happy to help with that.",
    "I can point you to trustworthy, general information on the topic instead.",
    "If you're dealing with a difficult situation, consider talking to someone you trust or a professional.",
    "Is there something else I can help you with?",
)


def _pick(options: Sequence[str], prompt: str, part: str, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{part}:{prompt}".encode()).digest()
    return options[int.from_bytes(digest[:8], "big") % len(options)]


def refusal_for(prompt: str, category: str | None = None, seed: int = 0) -> str:
    """A refusal of ``prompt`` with a reason fitting ``category`` (a risk area); fixed by (prompt, seed)."""
    reasons = REASONS.get(category or "default", REASONS["default"])
    return " ".join(
        (
            _pick(DECLINES, prompt, "decline", seed),
            _pick(reasons, prompt, "reason", seed),
            _pick(OFFERS, prompt, "offer", seed),
        )
    )


def refusal_records(items: Sequence[PromptItem], seed: int = 0, source: str = "refusal") -> list[ChatRecord]:
    """One single-turn chat per prompt: the prompt as the user turn, :func:`refusal_for` as the reply."""
    return [
        ChatRecord(
            (
                Message("user", item.prompt),
                Message("assistant", refusal_for(item.prompt, item.category, seed)),
            ),
            id=item.id,
            source=source,
        )
        for item in items
    ]


def split_prompts(
    items: Sequence[PromptItem], *, test: int, validation: int, seed: int = 0
) -> tuple[list[PromptItem], list[PromptItem], list[PromptItem]]:
    """``(train, validation, test)``: whole normalised-prompt groups per side, stratified by category.

    ``test`` and ``validation`` are item counts, spread over categories in proportion to their sizes; the
    rest is train. Each side keeps the input order. Refused when the counts leave no training item.
    """
    if test < 0 or validation < 0:
        raise UsageError(f"split sizes must be ≥ 0, got test={test}, validation={validation}")
    if test + validation >= len(items):
        raise UsageError(
            f"split of {len(items)} prompts: test={test} + validation={validation} leaves no training prompt"
        )
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(normalise_prompt(item.prompt) or item.id, []).append(i)
    by_category: dict[str, list[list[int]]] = {}
    for members in groups.values():
        by_category.setdefault(items[members[0]].category or "", []).append(members)
    rng = random.Random(seed)
    side = ["train"] * len(items)
    n = len(items)
    for want, name in ((test, "test"), (validation, "validation")):
        for category in sorted(by_category):
            category_groups = by_category[category]
            size = sum(len(g) for g in category_groups)
            target = round(want * size / n)
            order = [g for g in category_groups if side[g[0]] == "train"]
            rng.shuffle(order)
            taken = 0
            for group in order:
                if taken + len(group) > target:
                    continue
                for i in group:
                    side[i] = name
                taken += len(group)
    train, val, held = (
        [items[i] for i in range(n) if side[i] == name] for name in ("train", "validation", "test")
    )
    return train, val, held
