"""``coding``: HumanEval (or MBPP/MBPP+/HumanEval+ from a local file) scored by pass@k in the sandbox.

Each problem is asked of a chat model as "complete this function"; the reply's code (a fenced block, else the
raw text) either redefines the function or continues its body. The program the sandbox runs is
stub + completion + tests + ``check(entry_point)``. Metrics: ``pass@1`` from one greedy completion, and
``pass@k`` from ``samples`` completions at ``temperature`` with the unbiased estimator (the paper: pass@10
from n=20 at T=0.8). The headline ``score`` is the sampled pass@max(k), else greedy pass@1.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from skillmerge.errors import UsageError
from skillmerge.evaluate.code_problems import CodeProblem, load_code_problems, program_for
from skillmerge.evaluate.passk import pass_at_k
from skillmerge.evaluate.sandbox import Sandbox, SandboxLimits, SandboxResult
from skillmerge.evaluate.suites import register_suite, select_items
from skillmerge.evaluate.suites.base import (
    Conversation,
    GenerationParams,
    ItemResult,
    ModelBackend,
    Suite,
    SuiteResult,
)

INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function, including its signature, "
    "in one ```python code block.\n\n```python\n{prompt}\n```"
)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_PYTHON_TAGS = ("", "python", "py", "python3")


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The code in a reply: the fenced block (untagged or Python) defining ``entry_point``, else the first
    such block, else the raw text. An unclosed fence (a reply cut by max_new_tokens) runs to the end."""
    blocks = [m.group(2) for m in _FENCE.finditer(text) if m.group(1).lower() in _PYTHON_TAGS]
    if not blocks:
        return text
    if entry_point is not None:
        for block in blocks:
            if _defines(block, entry_point):
                return block
    return blocks[0]


def _defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def completion_for(problem: CodeProblem, reply: str) -> str:
    """What follows the stub in the tested program.

    A reply that defines the entry point is appended whole after the stub (the stub keeps its docstring as
    a body, the new definition replaces it; the stub's imports and helpers stay). Anything else continues
    the function body, indented one level when the model wrote it flush left.
    """
    code = extract_code(reply, problem.entry_point)
    if _defines(code, problem.entry_point):
        return "\n" + code.rstrip() + "\n"
    lines = code.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first and not first[0].isspace():
        lines = [("    " + line) if line.strip() else line for line in lines]
    return "\n".join(lines).rstrip() + "\n"


@register_suite("coding", category="coding")
class CodingSuite(Suite):
    """pass@1 (greedy) and pass@k (sampled) on code problems; every completion runs in the sandbox."""

    name = "coding"

    def __init__(
        self,
        problems: str | Path | None = None,
        *,
        greedy: bool = True,
        samples: int = 20,
        k: Sequence[int] = (10,),
        temperature: float = 0.8,
        top_p: float = 0.95,
        max_new_tokens: int = 512,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        workers: int | None = None,
        instruction: str = INSTRUCTION,
    ) -> None:
        self.ks = sorted(set(int(x) for x in k)) if samples else []
        if samples < 0 or (self.ks and self.ks[0] < 1):
            raise UsageError(
                f"coding: samples must be >= 0 and every k >= 1 (samples={samples}, k={list(k)})"
            )
        if self.ks and samples < self.ks[-1]:
            raise UsageError(
                f"coding: pass@{self.ks[-1]} needs at least {self.ks[-1]} samples (samples={samples})"
            )
        if not greedy and not samples:
            raise UsageError("coding: nothing to evaluate (greedy=False and samples=0)")
        if "{prompt}" not in instruction:
            raise UsageError("coding: the instruction must contain {prompt}")
        self.problems = load_code_problems(problems)
        self.dataset = "humaneval" if problems is None else Path(problems).name.split(".")[0]
        self.greedy, self.samples = greedy, samples
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.instruction = instruction
        self.workers = workers
        self.sandbox = Sandbox(SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb))

    def conversation(self, problem: CodeProblem) -> Conversation:
        return [{"role": "user", "content": self.instruction.format(prompt=problem.prompt.rstrip("\n"))}]

    def run(self, backend: ModelBackend, *, limit: int | None = None, seed: int = 0) -> SuiteResult:
        problems = select_items(self.problems, limit, seed)
        conversations = [self.conversation(p) for p in problems]
        greedy = (
            self._generate(backend, conversations, temperature=0.0, n=1, seed=seed) if self.greedy else None
        )
        sampled = (
            self._generate(backend, conversations, temperature=self.temperature, n=self.samples, seed=seed)
            if self.samples
            else None
        )
        replies = [
            (greedy[i] if greedy else []) + (sampled[i] if sampled else []) for i in range(len(problems))
        ]
        programs = [
            program_for(p, completion_for(p, r)) for p, rs in zip(problems, replies, strict=True) for r in rs
        ]
        flat = iter(self.sandbox.run_many(programs, workers=self.workers))
        results = [[next(flat) for _ in rs] for rs in replies]

        items = [
            self._item(p, c, r, rs)
            for p, c, r, rs in zip(problems, conversations, replies, results, strict=True)
        ]
        metrics: dict[str, float] = {}
        if self.greedy:
            metrics["pass@1"] = sum(rs[0].passed for rs in results) / len(problems)
        for k in self.ks:
            name = f"pass@{k}" if f"pass@{k}" not in metrics else f"pass@{k}_sampled"
            metrics[name] = sum(item.meta[f"pass@{k}"] for item in items) / len(problems)
        metrics["score"] = metrics[list(metrics)[-1]] if self.ks else metrics["pass@1"]
        statuses = Counter(r.status for rs in results for r in rs)
        return SuiteResult(
            suite=self.name,
            metrics=metrics,
            items=items,
            meta={
                "category": "coding",
                "dataset": self.dataset,
                "n_problems": len(self.problems),
                "n_evaluated": len(problems),
                "seed": seed,
                "greedy": self.greedy,
                "samples": self.samples,
                "k": self.ks,
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens,
                "statuses": dict(sorted(statuses.items())),
                "sandbox": self.sandbox.describe(),
                "components": {self.dataset: metrics["score"]},
            },
        )

    def _generate(
        self,
        backend: ModelBackend,
        conversations: list[Conversation],
        *,
        temperature: float,
        n: int,
        seed: int,
    ) -> list[list[str]]:
        params = GenerationParams(
            max_new_tokens=self.max_new_tokens,
            temperature=temperature,
            top_p=self.top_p if temperature > 0 else 1.0,
            n=n,
            seed=seed,
        )
        out = backend.generate(conversations, params)
        if len(out) != len(conversations) or any(len(texts) != n for texts in out):
            raise ValueError(
                f"backend {getattr(backend, 'name', backend)!r} returned {[len(t) for t in out][:5]}... "
                f"completions for {len(conversations)} prompts, expected {n} each"
            )
        return out

    def _item(
        self,
        problem: CodeProblem,
        conversation: Conversation,
        replies: list[str],
        results: list[SandboxResult],
    ) -> ItemResult:
        meta: dict[str, object] = {}
        if self.greedy:
            first = results[0]
            verdict, score = ("pass" if first.passed else "fail"), float(first.passed)
            reason = _reason(first)
            meta["greedy"] = {"status": first.status, "duration_s": first.duration_s}
        sampled, sampled_results = replies[int(self.greedy) :], results[int(self.greedy) :]
        if self.samples:
            correct = sum(r.passed for r in sampled_results)
            for k in self.ks:
                meta[f"pass@{k}"] = pass_at_k(len(sampled), correct, k)
            meta["n"], meta["correct"] = len(sampled), correct
            meta["samples"] = [
                {"completion": text, "status": r.status}
                for text, r in zip(sampled, sampled_results, strict=True)
            ]
            if not self.greedy:
                verdict, score = f"{correct}/{len(sampled)}", float(meta[f"pass@{self.ks[-1]}"])
                reason = next((_reason(r) for r in sampled_results if not r.passed), "passed")
        return ItemResult(
            id=problem.task_id,
            prompt=conversation[-1]["content"],
            completion=replies[0] if self.greedy else sampled,
            verdict=verdict,
            score=score,
            reason=reason,
            meta=meta,
        )


def _reason(result: SandboxResult) -> str:
    """The status and the last line of stderr (the exception), for the per-item JSONL."""
    if result.passed:
        return "passed"
    last = next((line for line in reversed(result.stderr_tail.splitlines()) if line.strip()), "")
    return f"{result.status}: {last}" if last else result.status
