"""``perplexity``: how likely a model finds reference replies (e.g. held-out answers of θ_G itself).

Each chat record is cut at its last assistant turn (as in :mod:`~skillmerge.evaluate.suites.chat`); the
model scores that turn's text given the conversation before it (``backend.loglikelihood``). Metrics over all
items, pooled by token (when the backend can count tokens, else by UTF-8 byte)::

    nll = −Σ log p(reply) / Σ tokens        perplexity = exp(nll)        score = exp(−nll) = 1 / perplexity

``score`` (the geometric-mean probability of a reference token, in (0, 1], higher is better) is the headline.
It measures drift: a model that moved away from θ_G's behaviour finds θ_G's answers less likely. No paper
category: listed under ``unaggregated`` in scores.json.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from skillmerge.errors import UsageError
from skillmerge.evaluate.suites import register_suite, select_items
from skillmerge.evaluate.suites.base import ItemResult, ModelBackend, Suite, SuiteResult
from skillmerge.evaluate.suites.chat import chat_items


@register_suite("perplexity")
class PerplexitySuite(Suite):
    """Per-token perplexity of the last assistant turn of held-out chat records (``score`` = 1/perplexity)."""

    name = "perplexity"

    def __init__(self, *, path: str | Path | Sequence[str | Path]) -> None:
        self.paths = [str(path)] if isinstance(path, str | Path) else [str(p) for p in path]
        if not self.paths:
            raise UsageError("perplexity: no path given")

    def run(self, backend: ModelBackend, *, limit: int | None = None, seed: int = 0) -> SuiteResult:
        source = [item for p in self.paths for item in chat_items(p)]
        if not source:
            raise UsageError(f"perplexity: no records in {', '.join(self.paths)}")
        items = select_items(source, limit, seed)
        logps = backend.loglikelihood([(item.prompt, item.reference) for item in items])
        count = getattr(backend, "count_tokens", None)
        unit = "token" if count is not None else "byte"
        sizes = [count(i.reference) if count is not None else len(i.reference.encode()) for i in items]
        results = []
        for item, logp, size in zip(items, logps, sizes, strict=True):
            nll = -logp / max(size, 1)
            results.append(
                ItemResult(
                    id=item.id,
                    prompt=item.prompt[-1]["content"] if item.prompt else "",
                    completion=item.reference,
                    verdict="scored",
                    score=math.exp(-nll),
                    reason=f"log p = {logp:.2f} over {size} {unit}s",
                    meta={"logprob": logp, unit + "s": size},
                )
            )
        total = sum(sizes)
        if total == 0:
            raise UsageError("perplexity: the reference replies are empty")
        nll = -sum(logps) / total
        metrics = {"nll": nll, "perplexity": math.exp(nll), "score": math.exp(-nll)}
        meta = {
            "paths": self.paths,
            "unit": unit,
            "n_items": len(items),
            "total_items": len(source),
            "limit": limit,
            "seed": seed,
            "units_scored": total,
        }
        return SuiteResult(self.name, metrics, results, meta)
