"""Judges: components that turn a (prompt, completion) pair into a verdict, each validated on its own data.

- :class:`RefusalJudge` — the default: general string/pattern rules (no model, no network).
- :class:`LMRefusalJudge` — optional: asks a language model (a local model directory, or an
  OpenAI-compatible endpoint) with a fixed rubric; falls back to the patterns when its answer is unreadable.

:func:`make_judge` builds one from a short spec; :mod:`skillmerge.evaluate.judges.validate` measures a judge
against the human labels that ship with XSTest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from skillmerge.errors import UsageError
from skillmerge.evaluate.judges.refusal import RefusalJudge, Verdict, VerdictLabel


class Judge(Protocol):
    """What a suite needs of a refusal judge."""

    name: str

    def judge(self, prompt: str, completion: str) -> Verdict: ...


def judge_all(judge: Judge, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
    """Verdicts for many pairs: batched when the judge can batch (an LM judge), one by one otherwise."""
    batched = getattr(judge, "judge_many", None)
    if callable(batched):
        return list(batched(pairs))
    return [judge.judge(prompt, completion) for prompt, completion in pairs]


def make_judge(spec: str | None = None) -> Judge:
    """A judge from a spec.

    ``None``/``"patterns"`` → :class:`RefusalJudge`; ``"lm:MODEL_DIR"`` → an LM judge on a local model;
    ``"openai:BASE_URL[#MODEL]"`` → an LM judge on an OpenAI-compatible endpoint (key: ``$OPENAI_API_KEY``).
    """
    if spec is None or spec == "patterns":
        return RefusalJudge()
    from skillmerge.evaluate.judges.lm_judge import LMRefusalJudge, OpenAIChatBackend, local_backend

    kind, _, target = spec.partition(":")
    if kind == "lm" and target:
        return LMRefusalJudge(local_backend(target))
    if kind == "openai" and target:
        url, _, model = target.partition("#")
        return LMRefusalJudge(OpenAIChatBackend(url, model or None))
    raise UsageError(f"judge {spec!r}: expected 'patterns', 'lm:MODEL_DIR' or 'openai:BASE_URL[#MODEL]'")


__all__ = ["Judge", "RefusalJudge", "Verdict", "VerdictLabel", "judge_all", "make_judge"]
