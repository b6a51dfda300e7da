"""``skillmerge.evaluate.run``: output layout, atomic writes, paper aggregates, refusals, the eval command."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from skillmerge.errors import OutputExistsError, UsageError
from skillmerge.evaluate import paper_scores, run
from skillmerge.evaluate.command import eval_command
from skillmerge.evaluate.lm_eval_bridge import fold_results, lm_eval_available, parse_tasks
from skillmerge.evaluate.suites.base import Conversation, GenerationParams, ItemResult, SuiteResult

SMALL = {"general": {"mc_items": 5, "gsm_items": 3, "if_items": 3}, "science": {"n_items": 4}}


class ConstantBackend:
    """Says the same thing to everyone; scores every continuation by minus its length."""

    name = "constant"

    def __init__(self, reply: str = "The answer is 3.", fail: bool = False) -> None:
        self.reply, self.fail = reply, fail
        self.calls = 0

    def generate(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[list[str]]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("backend crashed")
        return [[self.reply] * params.n for _ in conversations]

    def loglikelihood(self, requests: Sequence[tuple[Conversation, str]]) -> list[float]:
        self.calls += 1
        return [-float(len(continuation)) for _, continuation in requests]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_run_writes_items_summaries_scores_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = run(
        tmp_path / "model", ["general", "science"], out, backend=ConstantBackend(), suite_options=SMALL
    )
    assert sorted(p.name for p in out.iterdir()) == ["general", "manifest.json", "science", "scores.json"]
    general = json.loads((out / "general" / "summary.json").read_text())
    science = json.loads((out / "science" / "summary.json").read_text())
    items = _read_jsonl(out / "general" / "items.jsonl")
    assert len(items) == general["n_items"] == 5 + 3 + 3
    assert {"prompt", "completion", "verdict", "reason"} <= set(items[0])
    assert len(_read_jsonl(out / "science" / "items.jsonl")) == 4

    scores = json.loads((out / "scores.json").read_text())
    components = general["meta"]["components"]
    assert scores["general"] == pytest.approx(100 * sum(components.values()) / 3)
    assert scores["components"]["general"] == components
    assert scores["science"] == pytest.approx(100 * science["metrics"]["f1"])
    assert scores["safety"] is None and scores["coding"] is None and scores["exaggerated_refusal"] is None
    assert result["scores"] == scores
    assert result["suites"]["general"] == general["metrics"]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "eval" and manifest["suites"] == ["general", "science"]
    assert manifest["backend"] == "constant" and manifest["seed"] == 0
    assert manifest["scores"]["general"] == scores["general"]


def test_a_suites_own_limit_overrides_the_run_limit(tmp_path: Path) -> None:
    options = {"xstest": {"limit": None}, "safety": {"limit": 3, "sets": ["harmbench"]}}
    run(
        tmp_path / "model",
        ["xstest", "safety"],
        tmp_path / "eval",
        backend=ConstantBackend(),
        limit=2,
        suite_options=options,
    )
    xstest = json.loads((tmp_path / "eval" / "xstest" / "summary.json").read_text())
    safety = json.loads((tmp_path / "eval" / "safety" / "summary.json").read_text())
    assert xstest["n_items"] == 250 and safety["n_items"] == 3
    with pytest.raises(UsageError, match="option limit must be an integer"):
        run(
            tmp_path / "model",
            ["xstest"],
            tmp_path / "e2",
            backend=ConstantBackend(),
            suite_options={"xstest": {"limit": 0}},
        )


def test_existing_output_is_refused_before_the_model_runs(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    out.mkdir()
    backend = ConstantBackend()
    with pytest.raises(OutputExistsError):
        run(tmp_path / "model", ["science"], out, backend=backend, suite_options={"science": {"n_items": 2}})
    assert backend.calls == 0
    run(
        tmp_path / "m",
        ["science"],
        out,
        backend=backend,
        suite_options={"science": {"n_items": 2}},
        overwrite=True,
    )
    assert (out / "scores.json").is_file()


def test_a_failing_suite_leaves_no_output_behind(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="backend crashed"):
        run(tmp_path / "m", ["science"], tmp_path / "eval", backend=ConstantBackend(fail=True))
    assert list(tmp_path.iterdir()) == []


def test_bad_requests_are_refused_before_anything_runs(tmp_path: Path) -> None:
    backend = ConstantBackend()
    with pytest.raises(UsageError, match="nothing to evaluate"):
        run(tmp_path / "m", [], tmp_path / "eval", backend=backend)
    with pytest.raises(UsageError, match="unknown suite 'nope'"):
        run(tmp_path / "m", ["science", "nope"], tmp_path / "eval", backend=backend)
    with pytest.raises(UsageError, match="not being run: general"):
        run(tmp_path / "m", ["science"], tmp_path / "eval", backend=backend, suite_options={"general": {}})
    with pytest.raises(UsageError, match="model directory does not exist"):
        run(tmp_path / "missing", ["science"], tmp_path / "eval", backend="hf")
    assert backend.calls == 0 and list(tmp_path.iterdir()) == []


def _result(suite: str, metrics: dict[str, float], meta: dict | None = None) -> SuiteResult:
    return SuiteResult(suite, metrics, [ItemResult("1", "p", "c", "v", 1.0)], meta or {})


def test_paper_scores_follow_the_paper_formulas() -> None:
    results = [
        _result("general", {"score": 0.5}, {"components": {"mc": 0.2, "gsm": 0.5, "ifeval": 0.8}}),
        _result(
            "general-mc", {"score": 0.4}, {"components": {"mc": 0.4}}
        ),  # same task: counted once, last wins
        _result("coding", {"pass@1": 0.3, "pass@10": 0.4, "score": 0.4}),  # each suite's registered headline
        _result("safety", {"harmbench_compliance": 20.0, "safety": 85.0, "score": 0.85}),  # 0-100 beside it
        _result("xstest", {"xstest_safe_compliance": 92.0, "score": 0.92}),
        _result("perplexity", {"nll": 1.0, "perplexity": 2.7}),  # no headline metric: not guessed
        _result("science", {"score": 0.25, "f1": 0.25, "em": 0.1}, {"components": {"science-rc": 0.25}}),
        _result("mystery", {"a": 1.0, "b": 2.0}),
    ]
    scores = paper_scores(results)
    assert scores["general"] == pytest.approx(100 * (0.4 + 0.5 + 0.8) / 3)
    assert scores["coding"] == pytest.approx(40.0)
    assert scores["safety"] == pytest.approx(85.0)
    assert scores["exaggerated_refusal"] == pytest.approx(92.0)
    assert scores["science"] == pytest.approx(25.0)
    assert scores["components"]["coding"] == {"coding": pytest.approx(0.4)}
    assert scores["unaggregated"] == ["perplexity", "mystery"]


def test_lm_eval_is_refused_in_one_line_when_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # how Python marks a module as not importable
    assert not lm_eval_available()
    with pytest.raises(UsageError) as info:
        run(tmp_path / "m", [], tmp_path / "eval", backend=ConstantBackend(), lm_eval_tasks=["hellaswag"])
    assert (
        str(info.value) == "--lm-eval needs the lm-eval package, which is not installed (pip install lm-eval)"
    )
    assert list(tmp_path.iterdir()) == []


def test_lm_eval_results_fold_into_a_general_suite() -> None:
    assert parse_tasks("arc_easy, gsm8k,arc_easy") == ["arc_easy", "gsm8k"]
    results = {
        "results": {
            "arc_easy": {
                "alias": "arc_easy",
                "acc,none": 0.6,
                "acc_stderr,none": 0.01,
                "acc_norm,none": 0.55,
            },
            "gsm8k": {"exact_match,strict-match": 0.1, "exact_match,flexible-extract": 0.2},
        },
        "versions": {"arc_easy": 1.0, "gsm8k": 3.0},
    }
    folded = fold_results(results, ["arc_easy", "gsm8k"])
    assert folded.meta["components"] == {"lm-eval/arc_easy": 0.55, "lm-eval/gsm8k": 0.1}
    assert folded.metrics["arc_easy/acc,none"] == 0.6 and "arc_easy/acc_stderr,none" not in folded.metrics
    assert paper_scores([folded])["general"] == pytest.approx(100 * (0.55 + 0.1) / 2)


def test_run_with_the_hf_backend_on_a_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    run(
        tiny_model_dir,
        ["general-mc"],
        out,
        backend="hf",
        limit=3,
        suite_options={"general-mc": {"mc_items": 8}},
    )
    items = _read_jsonl(out / "general-mc" / "items.jsonl")
    assert len(items) == 3 and all(len(i["meta"]["logprobs"]) == 4 for i in items)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chat_template"] == "model" and manifest["model_fingerprint"]
    assert manifest["generation_stats"]["forward_passes"] >= 1


def test_eval_command_prints_scores(tmp_path: Path, tiny_model_dir: Path) -> None:
    app = typer.Typer()
    app.command()(eval_command)
    out = tmp_path / "eval"
    args = [str(tiny_model_dir), "--suite", "science", "--out", str(out), "--limit", "2", "--backend", "hf"]
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    assert "Science" in outcome.output and f"wrote {out}" in outcome.output
    assert len(_read_jsonl(out / "science" / "items.jsonl")) == 2
