"""lm-eval, really: local task files on a tiny model, offline, as a suite beside ours.

The same multiple-choice items go through our ``general-mc`` scorer and through lm-eval's own ``hf`` model
with ``configs/lm-eval/general-mc.yaml``; the per-choice log-likelihoods must agree. A local GSM8K
generation task runs through lm-eval's filters and metric. A spec's lm-eval task folder is part of its keys.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from shared_data import SHARED_DATA
from skillmerge.errors import UsageError
from skillmerge.evaluate import run
from skillmerge.evaluate.lm_eval_bridge import prepare_local_tasks
from skillmerge.evaluate.suites.general import generate_mc_items, write_mc_jsonl

pytest.importorskip("lm_eval", reason="the lm-eval bridge's tests need lm-eval (make test installs it)")

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "lm-eval"


def _mc_task_folder(root: Path, n: int = 8) -> tuple[Path, Path]:
    """configs/lm-eval/general-mc.yaml copied beside ``n`` of our generated items in its JSONL format."""
    folder = root / "general-mc-task"
    folder.mkdir()
    shutil.copy(CONFIGS / "general-mc.yaml", folder / "general-mc.yaml")
    items = write_mc_jsonl(folder / "general-mc.jsonl", generate_mc_items(n))
    return folder, items


def test_lm_eval_and_our_scorer_agree_on_the_same_multiple_choice_items(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder, items = _mc_task_folder(tmp_path)
    result = run(
        tiny_model_dir,
        ["general-mc", "lm-eval"],
        tmp_path / "eval",
        backend="hf",
        suite_options={"general-mc": {"mc_path": str(items)}, "lm-eval": {"paths": [str(folder)]}},
    )
    ours = [json.loads(line) for line in (tmp_path / "eval" / "general-mc" / "items.jsonl").open()]
    theirs = [json.loads(line) for line in (tmp_path / "eval" / "lm-eval" / "items.jsonl").open()]
    assert len(ours) == len(theirs) == 8
    theirs_by_doc = {item["meta"]["doc_id"]: item for item in theirs}
    for doc_id, mine in enumerate(ours):
        other = theirs_by_doc[doc_id]
        assert other["id"] == f"general_mc_local/{doc_id}"
        # lm-eval moves the context's trailing whitespace (the "\n" after "assistant") into every
        # continuation, so each of its log-likelihoods is ours plus log p("\n" | context): one offset per
        # item, the same for every choice, and below zero.
        offsets = [a - b for a, b in zip(other["meta"]["logliks"], mine["meta"]["logprobs"], strict=True)]
        assert offsets == pytest.approx([offsets[0]] * len(offsets), abs=1e-4) and offsets[0] < 0
        assert other["completion"] == mine["completion"]  # so the same choice is picked: acc agrees
        assert other["meta"]["metrics"]["acc"] == mine["score"]
    lm_eval = result["suites"]["lm-eval"]
    assert lm_eval["general_mc_local/acc,none"] == pytest.approx(result["suites"]["general-mc"]["mc_acc"])
    # acc_norm (lm-eval's headline for multiple choice) divides by the choice's length after the offset
    # is added, so it may pick differently; the suite's score and component are that headline.
    component = result["scores"]["components"]["general"]["lm-eval/general_mc_local"]
    assert (
        component
        == pytest.approx(lm_eval["general_mc_local/acc_norm,none"])
        == pytest.approx(lm_eval["score"])
    )


def test_a_local_gsm8k_generation_task_runs_offline_through_the_eval_command_option(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    task = yaml.safe_load((CONFIGS / "gsm8k-local.yaml").read_text())
    task["generation_kwargs"]["max_gen_toks"] = 24  # a random tiny model: keep its rambling short
    (folder / "gsm8k-local.yaml").write_text(yaml.safe_dump(task))
    lines = (SHARED_DATA / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    (folder / "gsm8k-test.jsonl").write_text("\n".join(lines) + "\n")

    result = run(
        tiny_model_dir,
        [],
        tmp_path / "eval",
        backend="hf",
        limit=2,
        lm_eval_tasks=[str(folder / "gsm8k-local.yaml")],
    )
    metrics = result["suites"]["lm-eval"]
    assert "gsm8k_local/exact_match,last-number" in metrics
    items = [json.loads(line) for line in (tmp_path / "eval" / "lm-eval" / "items.jsonl").open()]
    assert [item["id"] for item in items] == ["gsm8k_local/0", "gsm8k_local/1"]
    assert items[0]["meta"]["target"] == "18"
    assert (
        "Question: Janet" in items[0]["prompt"] and "<|im_start|>assistant" in items[0]["prompt"]
    )  # chat template
    assert all(
        isinstance(item["completion"], str) and isinstance(item["meta"]["generated"], str) for item in items
    )
    # the filter's pick: a number of the text, or lm-eval's "[invalid]" when there is none
    assert all(i["completion"] in i["meta"]["generated"] or i["completion"] == "[invalid]" for i in items)
    manifest = json.loads((tmp_path / "eval" / "manifest.json").read_text())
    assert manifest["suites"] == ["lm-eval"]


def test_relative_data_files_are_resolved_against_the_task_file_and_helpers_travel(tmp_path: Path) -> None:
    source = tmp_path / "tasks"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "t.yaml").write_text(
        "task: t1\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data/t.jsonl\n"
        "process_docs: !function utils.process\ntest_split: test\n"
    )
    (source / "sub" / "utils.py").write_text("def process(docs):\n    return docs\n")
    prepared = prepare_local_tasks([source], tmp_path / "prepared")
    assert prepared.names == ["t1"]
    copied = (tmp_path / "prepared" / "0-tasks" / "sub" / "t.yaml").read_text()
    assert f"test: {(source / 'sub' / 'data' / 't.jsonl').resolve()}" in copied
    assert "process_docs: !function 'utils.process'" in copied or "!function utils.process" in copied
    assert (tmp_path / "prepared" / "0-tasks" / "sub" / "utils.py").is_file()


def test_the_lm_eval_suite_without_tasks_or_with_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="give tasks"):
        run(tmp_path / "m", ["lm-eval"], tmp_path / "eval")
    with pytest.raises(UsageError, match=r"nope\.yaml: task file or folder does not exist"):
        run(tmp_path / "m", [], tmp_path / "eval", lm_eval_tasks=[str(tmp_path / "nope.yaml")])
    assert not (tmp_path / "eval").exists()


def test_a_spec_lm_eval_task_folder_is_part_of_the_eval_keys(tmp_path: Path, tiny_model_dir: Path) -> None:
    from skillmerge.experiment.dag import expand
    from skillmerge.experiment.spec import load_spec
    from test_experiment_runner import _spec

    folder, items = _mc_task_folder(tmp_path)
    spec_file = _spec(tmp_path, tiny_model_dir)
    spec = yaml.safe_load(spec_file.read_text())
    spec["eval"] = {"general": ["lm-eval"], "options": {"lm-eval": {"paths": [str(folder)]}}}
    spec_file.write_text(yaml.safe_dump(spec))

    def eval_keys() -> dict[str, str]:
        return {s.id: s.key for s in expand(load_spec(spec_file)) if s.kind == "eval"}

    before = eval_keys()
    items.write_text(items.read_text().replace("What", "Which"))
    after = eval_keys()
    assert before.keys() == after.keys() and all(before[k] != after[k] for k in before)
