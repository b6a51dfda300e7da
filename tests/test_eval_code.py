"""Scoring code: problems files, samples files, ``eval-code`` and the ``coding`` suite (with a fake backend
that answers from the canonical solutions, so the verdicts are known)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from skillmerge.errors import DataError, UsageError
from skillmerge.evaluate.code_problems import CodeProblem, load_code_problems, program_for
from skillmerge.evaluate.eval_code import eval_code_command, read_samples, score_samples
from skillmerge.evaluate.suites import get_suite, headline_score
from skillmerge.evaluate.suites.base import Conversation, GenerationParams
from skillmerge.evaluate.suites.coding import CodingSuite, completion_for, extract_code

HUMANEVAL = load_code_problems()
FIRST = HUMANEVAL[:3]  # HumanEval/0..2


def write_jsonl(path: Path, rows: Sequence[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def problem_row(problem: CodeProblem, **changes: object) -> dict:
    row = {
        "task_id": problem.task_id,
        "prompt": problem.prompt,
        "canonical_solution": problem.canonical_solution,
        "test": problem.test,
        "entry_point": problem.entry_point,
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not None}


# --- problems files -------------------------------------------------------------------------------------


def test_bundled_humaneval_has_164_problems_with_tests() -> None:
    assert len(HUMANEVAL) == 164
    assert HUMANEVAL[0].task_id == "HumanEval/0" and HUMANEVAL[0].entry_point == "has_close_elements"
    assert all("def check(" in p.test for p in HUMANEVAL)


def test_local_problems_file_in_humaneval_format_loads(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mbpp.jsonl", [problem_row(p) for p in FIRST])
    assert load_code_problems(path) == FIRST


@pytest.mark.parametrize("test", ["", "   \n", None])
def test_task_lacking_tests_is_refused(tmp_path: Path, test: str | None) -> None:
    rows = [problem_row(FIRST[0]), problem_row(FIRST[1], test=test)]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_code_problems(path)
    assert str(err.value) == f"{path}:2: task HumanEval/1 has no tests (field 'test' is missing or empty)"


def test_task_whose_test_defines_no_check_is_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [problem_row(FIRST[0], test="assert True\n")])
    with pytest.raises(DataError, match=r"p\.jsonl:1: task HumanEval/0: its test does not define check"):
        load_code_problems(path)


def test_problem_missing_entry_point_and_repeated_task_are_refused(tmp_path: Path) -> None:
    missing = write_jsonl(tmp_path / "a.jsonl", [problem_row(FIRST[0], entry_point=None)])
    with pytest.raises(
        DataError, match=r"a\.jsonl:1: task HumanEval/0: missing or non-text field\(s\) entry_point"
    ):
        load_code_problems(missing)
    repeated = write_jsonl(tmp_path / "b.jsonl", [problem_row(FIRST[0]), problem_row(FIRST[0])])
    with pytest.raises(DataError, match=r"b\.jsonl:2: task HumanEval/0 repeats line 1"):
        load_code_problems(repeated)


# --- samples and eval-code ------------------------------------------------------------------------------


def test_samples_naming_an_unknown_task_are_refused(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": "HumanEval/0", "completion": "    pass\n"},
            {"task_id": "HumanEval/999", "completion": ""},
        ],
    )
    with pytest.raises(DataError) as err:
        score_samples(FIRST, read_samples(path), samples_path=path)
    assert str(err.value) == f"{path}:2: unknown task 'HumanEval/999' (not in the problems)"


def test_completion_that_is_not_utf8_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    good = json.dumps({"task_id": "HumanEval/0", "completion": "    return True\n"}).encode()
    path.write_bytes(good + b"\n" + b'{"task_id": "HumanEval/0", "completion": "    return \xff\xfe"}\n')
    with pytest.raises(DataError) as err:
        read_samples(path)
    assert str(err.value) == f"{path}:2: not valid UTF-8 (byte 0xff at column 54)"


def test_completion_with_a_lone_surrogate_escape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"task_id": "HumanEval/0", "completion": "    return \\udc80"}\n', encoding="ascii")
    with pytest.raises(DataError, match=r"s\.jsonl:1: completion is not valid UTF-8"):
        read_samples(path)


def test_fewer_samples_than_k_is_refused_naming_the_task(tmp_path: Path) -> None:
    rows = [{"task_id": "HumanEval/0", "completion": FIRST[0].canonical_solution}] * 3
    rows += [{"task_id": "HumanEval/1", "completion": FIRST[1].canonical_solution}]
    samples = read_samples(write_jsonl(tmp_path / "s.jsonl", rows))
    with pytest.raises(UsageError, match=r"^task HumanEval/1: pass@2 needs at least 2 samples, got n=1$"):
        score_samples(FIRST, samples, ks=[1, 2])


def test_score_samples_counts_correct_completions_per_task(tmp_path: Path) -> None:
    rows = []
    for p in FIRST:  # per task: canonical, wrong, raises
        rows += [
            {"task_id": p.task_id, "completion": p.canonical_solution},
            {"task_id": p.task_id, "completion": "    return None\n"},
            {"task_id": p.task_id, "completion": "    raise RuntimeError('no')\n"},
        ]
    report = score_samples(FIRST, read_samples(write_jsonl(tmp_path / "s.jsonl", rows)), ks=[1, 2, 3])
    assert report["pass@1"] == pytest.approx(1 / 3)
    assert report["pass@2"] == pytest.approx(2 / 3)  # 1 − C(2,2)/C(3,2)
    assert report["pass@3"] == pytest.approx(1.0)
    assert [(t["task_id"], t["n"], t["correct"]) for t in report["tasks"]] == [
        (p.task_id, 3, 1) for p in FIRST
    ]
    statuses = [r["status"] for r in report["tasks"][0]["results"]]
    assert statuses == ["passed", "failed", "error"]
    assert report["tasks"][0]["results"][2]["stderr_tail"].rstrip().endswith("RuntimeError: no")


def cli(command: Callable[..., None]) -> typer.Typer:
    app = typer.Typer()
    app.command()(command)
    return app


def test_eval_code_command_prints_per_task_results_and_pass_at_k_as_json(tmp_path: Path) -> None:
    problems = write_jsonl(tmp_path / "p.jsonl", [problem_row(p) for p in FIRST])
    rows = [{"task_id": p.task_id, "completion": p.canonical_solution} for p in FIRST]
    rows.append({"task_id": "HumanEval/2", "completion": "    return 0.0\n"})
    samples = write_jsonl(tmp_path / "s.jsonl", rows)
    result = CliRunner().invoke(
        cli(eval_code_command), ["--problems", str(problems), "--samples", str(samples), "--timeout", "5"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pass@1"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert {t["task_id"]: (t["n"], t["correct"]) for t in report["tasks"]} == {
        "HumanEval/0": (1, 1),
        "HumanEval/1": (1, 1),
        "HumanEval/2": (2, 1),
    }
    assert report["sandbox"]["limits"]["timeout_s"] == 5.0


def test_eval_code_command_defaults_to_bundled_humaneval_and_refuses_n_below_k(tmp_path: Path) -> None:
    samples = write_jsonl(
        tmp_path / "s.jsonl", [{"task_id": "HumanEval/163", "completion": "    return []\n"}]
    )
    ok = CliRunner().invoke(cli(eval_code_command), ["--samples", str(samples)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["pass@1"] == 0.0
    bad = CliRunner().invoke(cli(eval_code_command), ["--samples", str(samples), "--k", "1", "--k", "5"])
    assert isinstance(bad.exception, UsageError)
    assert str(bad.exception) == "task HumanEval/163: pass@5 needs at least 5 samples, got n=1"


# --- reply extraction -----------------------------------------------------------------------------------


def test_code_is_taken_from_the_fenced_block_defining_the_entry_point() -> None:
    reply = (
        "Here is a helper:\n```python\ndef helper():\n    return 1\n```\nand the answer:\n"
        "```python\ndef f(x):\n    return x + 1\n```\nDone."
    )
    assert extract_code(reply, "f") == "def f(x):\n    return x + 1"
    assert extract_code(reply) == "def helper():\n    return 1"
    assert extract_code("```\nreturn 1\n```") == "return 1"
    assert extract_code("no fence at all") == "no fence at all"
    assert extract_code("```python\ndef f():\n    return 1  # cut off by max tokens", "f").startswith(
        "def f():"
    )
    assert extract_code("```bash\nrm -rf /\n```\n    return 1") == "```bash\nrm -rf /\n```\n    return 1"


def test_completion_for_redefines_or_continues_the_stub() -> None:
    problem = FIRST[0]
    whole = completion_for(problem, f"```python\n{problem.prompt}{problem.canonical_solution}```")
    assert whole.startswith("\nfrom typing import List\n")
    body = completion_for(problem, "return False")  # flush left: indented into the function body
    assert body == "    return False\n"
    assert compile(program_for(problem, whole), "p", "exec") and compile(
        program_for(problem, body), "p", "exec"
    )


# --- the coding suite -----------------------------------------------------------------------------------


class AnswerKeyBackend:
    """A fake model: answers each problem with ``answer(problem, sample_index, temperature)``."""

    name = "answer-key"

    def __init__(self, problems: Sequence[CodeProblem], answer: Callable[[CodeProblem, int, float], str]):
        self.problems = problems
        self.answer = answer
        self.calls: list[GenerationParams] = []

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[list[str]]:
        self.calls.append(params)
        out = []
        for conversation in conversations:
            text = conversation[-1]["content"]
            problem = next(p for p in self.problems if p.prompt.rstrip("\n") in text)
            out.append([self.answer(problem, i, params.temperature) for i in range(params.n)])
        return out

    def loglikelihood(self, requests: Sequence[tuple[Conversation, str]]) -> list[float]:
        raise NotImplementedError


def fenced_canonical(problem: CodeProblem, i: int, temperature: float) -> str:
    return f"Sure!\n```python\n{problem.prompt}{problem.canonical_solution}```\n"


def wrong(problem: CodeProblem, i: int, temperature: float) -> str:
    return f"```python\ndef {problem.entry_point}(*args):\n    return None\n```"


def test_coding_suite_scores_canonical_answers_one(tmp_path: Path) -> None:
    suite = get_suite("coding", samples=3, k=[1, 2], timeout_s=5.0)
    assert isinstance(suite, CodingSuite)
    backend = AnswerKeyBackend(HUMANEVAL, fenced_canonical)
    result = suite.run(backend, limit=8, seed=1)
    assert result.metrics == {"pass@1": 1.0, "pass@1_sampled": 1.0, "pass@2": 1.0, "score": 1.0}
    assert result.meta["n_problems"] == 164 and result.meta["n_evaluated"] == len(result.items) == 8
    assert [(c.temperature, c.n) for c in backend.calls] == [(0.0, 1), (0.8, 3)]
    assert all(item.verdict == "pass" and item.meta["correct"] == 3 for item in result.items)
    assert headline_score(result, "coding") == 1.0


def test_coding_suite_scores_wrong_answers_zero() -> None:
    suite = CodingSuite(samples=2, k=[2], timeout_s=5.0)
    result = suite.run(AnswerKeyBackend(HUMANEVAL, wrong), limit=6)
    assert result.metrics == {"pass@1": 0.0, "pass@2": 0.0, "score": 0.0}
    assert all(
        item.verdict == "fail" and item.reason.startswith(("failed", "error")) for item in result.items
    )


def test_coding_suite_pass_at_k_uses_the_unbiased_estimator() -> None:
    # Greedy is wrong, one sample in three is right: pass@1 (greedy) = 0, pass@2 = 1 − C(2,2)/C(3,2) = 2/3.
    def one_in_three(problem: CodeProblem, i: int, temperature: float) -> str:
        if temperature > 0 and i == 1:
            return problem.canonical_solution  # a raw body, no fence
        return "    return None\n"

    suite = CodingSuite(samples=3, k=[2], timeout_s=5.0)
    result = suite.run(AnswerKeyBackend(HUMANEVAL, one_in_three), limit=4)
    assert result.metrics["pass@1"] == 0.0
    assert result.metrics["pass@2"] == pytest.approx(2 / 3)
    assert result.metrics["score"] == pytest.approx(2 / 3)
    assert [s["status"] == "passed" for s in result.items[0].meta["samples"]] == [False, True, False]


def test_coding_suite_reads_a_local_problems_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mbpp_plus.jsonl", [problem_row(p) for p in FIRST])
    suite = CodingSuite(path, samples=0, timeout_s=5.0)
    result = suite.run(AnswerKeyBackend(FIRST, fenced_canonical))
    assert result.metrics == {"pass@1": 1.0, "score": 1.0}
    assert result.meta["dataset"] == "mbpp_plus" and result.meta["components"] == {"mbpp_plus": 1.0}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"samples": 5, "k": [10]}, "pass@10 needs at least 10 samples"),
        ({"greedy": False, "samples": 0}, "nothing to evaluate"),
        ({"instruction": "no placeholder"}, "must contain {prompt}"),
    ],
)
def test_bad_coding_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        CodingSuite(**options)
