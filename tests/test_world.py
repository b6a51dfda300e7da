"""The synthetic skill world: sizes, determinism, leak-free splits, held-out objects, correct answers."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from skillmerge.data.leakage import normalise_prompt
from skillmerge.data.records import ChatRecord, read_jsonl
from skillmerge.errors import OutputExistsError, UsageError
from skillmerge.world import (
    COMPLIANCE,
    DEFAULT_TRAIN,
    NAMES,
    REFUSAL,
    SPLITS,
    World,
    file_name,
    make_world,
    write_world,
)
from skillmerge.world import build as world_build
from skillmerge.world.coding import FAMILIES as CODING_FAMILIES
from skillmerge.world.coding import NUMBER_WORDS
from skillmerge.world.general import FAMILIES as GENERAL_FAMILIES
from skillmerge.world.safety import BENIGN, HARMFUL, TEMPLATES


@pytest.fixture(scope="module")
def world() -> World:
    return make_world(0)


def _all(world: World, split: str | None = None) -> list[ChatRecord]:
    return [r for by in world.splits.values() for s, recs in by.items() if split in (None, s) for r in recs]


def _answer(record: ChatRecord) -> str:
    return record.messages[-1].content


def _dump(world: World) -> list:
    return [r.to_json() for r in _all(world)]


# ---------------------------------------------------------------- shape, sizes, determinism


def test_default_sizes_sources_and_ids(world: World) -> None:
    assert list(world.splits) == list(NAMES) == ["general", "science", "safety", "coding"]
    for name in NAMES:
        assert list(world.splits[name]) == list(SPLITS)
        assert world.counts()[name] == {"train": DEFAULT_TRAIN[name], "validation": 32, "test": 64}
    assert DEFAULT_TRAIN == {"general": 512, "science": 256, "safety": 256, "coding": 256}
    general_sources = Counter(r.source for r in world.splits["general"]["train"])
    assert set(general_sources) == {f"general/{f}" for f in GENERAL_FAMILIES}
    assert min(general_sources.values()) >= 512 // 6 - 2  # families are balanced
    for split in SPLITS:
        assert {r.source for r in world.splits["science"][split]} == {"science/passage"}
        assert {r.source for r in world.splits["coding"][split]} == {"coding/function"}
        safety = world.splits["safety"][split]
        labels = Counter(r.extra["label"] for r in safety)
        assert labels["harmful"] == labels["benign"] == len(safety) // 2
        assert all(r.source == f"safety/{r.extra['label']}" for r in safety)
    ids = [r.id for r in _all(world)]
    assert len(set(ids)) == len(ids)
    assert world.splits["coding"]["test"][0].id == "coding-test-00000"


def test_records_are_short_two_turn_chats(world: World) -> None:
    for record in _all(world):
        assert [m.role for m in record.messages] == ["user", "assistant"]
        assert len(record.prompt.split()) <= 40, record.prompt
        answer = _answer(record)
        assert answer.strip() == answer and answer
        limit = 8 if record.source == "coding/function" else 13
        assert len(answer.split()) <= limit, answer


def test_same_seed_same_world_other_seed_other_world(world: World) -> None:
    assert _dump(make_world(0)) == _dump(world)
    other = make_world(1)
    assert _dump(other) != _dump(world)
    assert other.heldout["safety"] != world.heldout["safety"]


def test_evaluation_splits_do_not_depend_on_train_sizes(world: World) -> None:
    small = make_world(0, train={"general": 5, "safety": 4, "coding": 0})
    assert small.counts()["general"]["train"] == 5
    assert small.counts()["coding"]["train"] == 0
    assert small.counts()["science"]["train"] == 256
    for name in NAMES:
        for split in ("validation", "test"):
            assert [r.to_json() for r in small.splits[name][split]] == [
                r.to_json() for r in world.splits[name][split]
            ]


def test_custom_validation_and_test_sizes() -> None:
    w = make_world(3, train={name: 10 for name in NAMES}, validation=7, test=9)
    assert all(w.counts()[name] == {"train": 10, "validation": 7, "test": 9} for name in NAMES)
    labels = Counter(r.extra["label"] for r in w.splits["safety"]["test"])
    assert labels == {"harmful": 5, "benign": 4}  # the odd record is harmful


def test_a_test_size_per_dataset_keeps_the_other_test_sets() -> None:
    train = {name: 10 for name in NAMES}
    base = make_world(3, train=train, test=64)
    wide = make_world(3, train=train, test={"general": 40})
    assert {name: wide.counts()[name]["test"] for name in NAMES} == {
        "general": 40,
        "science": 64,
        "safety": 64,
        "coding": 64,
    }
    for name in ("science", "safety", "coding"):  # each split is seeded on its own
        assert [r.to_json() for r in wide.splits[name]["test"]] == [
            r.to_json() for r in base.splits[name]["test"]
        ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train": {"general": -1}}, "train size of general"),
        ({"train": {"maths": 10}}, "unknown dataset 'maths'"),
        ({"validation": -3}, "validation size"),
        ({"test": True}, "test size"),
        ({"test": {"maths": 10}}, "test size for unknown dataset 'maths'"),
        ({"test": {"general": -2}}, "test size of general"),
        ({"train": {"coding": 100_000}}, "coding train: cannot make 100000 distinct records"),
    ],
)
def test_bad_sizes_are_usage_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        make_world(0, **kwargs)


def test_default_world_is_fast() -> None:
    import time

    start = time.perf_counter()
    make_world(7)
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------- no leaks between splits


def test_no_prompt_repeats_anywhere(world: World) -> None:
    for seed in (0, 1):
        w = world if seed == 0 else make_world(1)
        keys = [normalise_prompt(r.prompt) for r in _all(w)]
        assert len(set(keys)) == len(keys)
        train = {normalise_prompt(r.prompt) for r in _all(w, "train")}
        evaluation = {normalise_prompt(r.prompt) for r in _all(w, "test") + _all(w, "validation")}
        assert not train & evaluation


# ---------------------------------------------------------------- general: answers are right


def _tail(prompt: str) -> list[str]:
    return prompt.split(": ", 1)[1].rstrip("?").split()


def _expected_general(record: ChatRecord) -> str:
    family = record.source.split("/")[1]
    prompt = record.prompt
    if family == "copy":
        return " ".join(_tail(prompt))
    if family == "reverse":
        return " ".join(reversed(_tail(prompt)))
    if family == "sort":
        return " ".join(map(str, sorted(int(x) for x in _tail(prompt))))
    if family == "count":
        return str(len(_tail(prompt)))
    if family == "arithmetic":
        a, b = (int(x) for x in re.findall(r"\d+", prompt))
        if "plus" in prompt or "Add" in prompt or "+" in prompt:
            return str(a + b)
        return str(b - a) if prompt.startswith("Subtract") else str(a - b)
    assert family == "lookup"
    facts_text, question = prompt.rsplit(".", 1)
    facts = dict(re.findall(r"(\w+) (?:is|lives in|has) (\w+)", facts_text))
    (asked,) = [word for word in re.findall(r"\w+", question) if word in facts]
    return facts[asked]


def test_general_answers_follow_from_the_prompt(world: World) -> None:
    for record in [r for by in world.splits["general"].values() for r in by]:
        assert _answer(record) == _expected_general(record), record.prompt


# ---------------------------------------------------------------- science


_ENTITY = re.compile(r"The (\w+ \w+) is an? (\w+) of (the \w+ \w+)\.")


def _stems(records: list[ChatRecord]) -> list[str]:
    return [_ENTITY.search(r.prompt).group(1).split()[0] for r in records]


def test_science_stems_stay_disjoint_in_a_large_world() -> None:
    # 3000 x 200 draws from ~48600 stems would collide about a dozen times without the per-split ownership
    big = make_world(5, train={"general": 0, "science": 3000, "safety": 0, "coding": 0}, test=200)
    train, test = (_stems(big.splits["science"][s]) for s in ("train", "test"))
    assert len(set(train)) == 3000 and len(set(test)) == 200
    assert not set(train) & set(test)


def test_science_answers_are_in_the_passage_and_entities_are_split_disjoint(world: World) -> None:
    entities: dict[str, list[str]] = {}
    for split in SPLITS:
        entities[split] = []
        for record in world.splits["science"][split]:
            match = _ENTITY.search(record.prompt)
            assert match, record.prompt
            entity = match.group(1)
            passage, question = record.prompt.rsplit("Question: ", 1)
            assert entity in question
            assert _answer(record) in passage
            entities[split].append(entity)
            stems = {e.split()[0] for e in entities[split]}
        assert len(stems) == len(entities[split])  # each invented stem once per split
    stems_by_split = {s: {e.split()[0] for e in es} for s, es in entities.items()}
    assert not stems_by_split["train"] & stems_by_split["test"]
    assert not stems_by_split["train"] & stems_by_split["validation"]
    assert not stems_by_split["validation"] & stems_by_split["test"]
    kinds = Counter(re.sub(r"\d+", "N", _answer(r)).split()[-1] for r in world.splits["science"]["train"])
    assert {"years", "kilograms", "centimetres", "hour"} <= set(kinds)


# ---------------------------------------------------------------- safety


def test_safety_answers_are_refusal_or_templated_compliance(world: World) -> None:
    assert REFUSAL == "I can't help with that."
    actions = {COMPLIANCE.format(verb=v, object=b.phrase)[21:-1] for b in BENIGN for v in b.verbs}
    assert "kill a python process" in actions
    for record in [r for by in world.splits["safety"].values() for r in by]:
        if record.extra["label"] == "harmful":
            assert _answer(record) == REFUSAL
        else:
            match = re.fullmatch(r"Sure, here is how to (.+)\.", _answer(record))
            assert match, _answer(record)
            assert match.group(1) in record.prompt
            assert match.group(1) in actions


def test_harmful_object_names_never_contain_one_another() -> None:
    names = [r.name for r in HARMFUL]
    assert len(names) == 24 and len(set(names)) == 24
    assert not [(a, b) for a in names for b in names if a != b and a in b]
    assert len(BENIGN) == 24
    assert not [(h, b.name) for h in names for b in BENIGN if h in b.name]


def test_heldout_harmful_objects_and_templates_never_reach_train(world: World) -> None:
    plan = world.heldout["safety"]
    heldout = plan["harmful_objects"]
    assert len(heldout) == 6 and set(heldout) <= {r.name for r in HARMFUL}
    train_prompts = [r.prompt for r in _all(world, "train")]
    for name in heldout + plan["benign_objects"]:
        assert not [p for p in train_prompts if name in p], name
    patterns = [
        re.compile(re.escape(t).replace(r"\{verb\}", ".+").replace(r"\{object\}", ".+")) for t in TEMPLATES
    ]
    new_templates = [p for p, t in zip(patterns, TEMPLATES, strict=True) if t in plan["templates"]]
    assert len(new_templates) == 2
    safety_train = [r.prompt for r in world.splits["safety"]["train"]]
    assert not [p for p in safety_train if any(t.fullmatch(p) for t in new_templates)]

    test = world.splits["safety"]["test"]
    harmful_test = [r for r in test if r.extra["label"] == "harmful"]
    with_new_object = [r for r in harmful_test if any(name in r.prompt for name in heldout)]
    assert {r.extra["novel"] for r in with_new_object} == {"object"}
    assert len(with_new_object) == len(harmful_test) // 2
    assert len({name for name in heldout for r in with_new_object if name in r.prompt}) >= 4
    seen_new_template = [r for r in harmful_test if r.extra["novel"] == "template"]
    assert seen_new_template
    for record in seen_new_template:
        assert not any(name in record.prompt for name in heldout)
        assert any(t.fullmatch(record.prompt) for t in new_templates)
    # and what the test split calls "seen" really is in train
    trained_objects = {r.name for r in HARMFUL if any(r.name in p for p in safety_train)}
    assert trained_objects == {r.name for r in HARMFUL} - set(heldout)


# ---------------------------------------------------------------- coding


def _run_tests(code: str, tests: list[str]) -> None:
    namespace: dict = {}
    exec(code, namespace)
    for line in tests:
        exec(line, namespace)


def test_every_coding_answer_passes_its_tests_and_a_wrong_one_fails(world: World) -> None:
    for record in [r for by in world.splits["coding"].values() for r in by]:
        code, tests, name = _answer(record), record.extra["tests"], record.extra["entry_point"]
        assert 3 <= len(tests) <= 5 and len(set(tests)) == len(tests)
        assert code.startswith(f"def {name}(") and f"named {name} " in record.prompt
        assert code.count("\n") == 1 and code.split("\n")[1].startswith("    return ")
        _run_tests(code, tests)
        wrong = code.split("\n")[0] + "\n    return None"
        with pytest.raises(AssertionError):
            _run_tests(wrong, tests)


def test_coding_names_are_disjoint_between_splits(world: World) -> None:
    names = {s: {r.extra["entry_point"] for r in world.splits["coding"][s]} for s in SPLITS}
    assert not names["train"] & names["test"]
    assert not names["train"] & names["validation"]
    assert not names["validation"] & names["test"]
    assert set(world.heldout["coding_names"]["test"]) >= names["test"]
    all_names = [
        n.format(k=k, w=NUMBER_WORDS.get(k, k)) for f in CODING_FAMILIES for k in f.ks for n in f.names
    ]
    assert len(set(all_names)) == len(all_names)  # no two families share a function name
    family_of = {
        n.format(k=k, w=NUMBER_WORDS.get(k, k)): f.key for f in CODING_FAMILIES for k in f.ks for n in f.names
    }

    def family_params(split: str) -> set[tuple[str, str]]:
        return {
            (family_of[r.extra["entry_point"]], _answer(r).split("(", 1)[1].split(")")[0])
            for r in world.splits["coding"][split]
        }

    assert len({key for key, _ in family_params("test")}) == len(CODING_FAMILIES)  # every family is tested
    assert not family_params("train") & family_params("test")  # nor shares a parameter name with train


# ---------------------------------------------------------------- writing


def test_write_world_round_trips_and_describes_itself(world: World, tmp_path: Path) -> None:
    out = write_world(tmp_path / "world", world)
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([file_name(n, s) for n in NAMES for s in SPLITS] + ["world.json"])
    for name in NAMES:
        for split in SPLITS:
            records, report = read_jsonl(out / file_name(name, split))
            assert report.n_skipped == 0
            assert records == world.splits[name][split]
            assert [r.extra for r in records] == [r.extra for r in world.splits[name][split]]
    manifest = json.loads((out / "world.json").read_text())
    assert manifest["seed"] == 0
    assert manifest["files"]["safety-test.jsonl"]["records"] == 64
    assert manifest["files"]["safety-test.jsonl"]["sources"] == {"safety/benign": 32, "safety/harmful": 32}
    assert manifest["sources"]["general/lookup"] == sum(
        1 for r in _all(world) if r.source == "general/lookup"
    )
    assert sum(f["records"] for f in manifest["files"].values()) == len(_all(world))
    assert manifest["heldout"]["safety"] == world.heldout["safety"]


def test_write_world_refuses_existing_dir_and_is_atomic(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "world"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        write_world(out, world)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    write_world(out, world, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "world.json").is_file()

    real = world_build.write_jsonl
    calls = []

    def failing(path, records, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(path, records, **kwargs)

    monkeypatch.setattr(world_build, "write_jsonl", failing)
    fresh = tmp_path / "fresh"
    with pytest.raises(OSError, match="disk full"):
        write_world(fresh, world)
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]  # no temporary sibling left


# ---------------------------------------------------------------- command


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """``run_cli`` (the real CLI, where ``world`` is registered) returning (exit code, stdout, stderr)."""
    from skillmerge import cli as cli_module

    def run(args: list[str]) -> tuple[int, str, str]:
        code = cli_module.run_cli(args)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_world_make_command_writes_and_prints_counts(cli, tmp_path: Path) -> None:
    out = tmp_path / "w"
    args = ["world", "make", str(out), "--seed", "2", "--train-general", "30", "--train-skill", "12"]
    code, stdout, _ = cli([*args, "--validation", "4", "--test", "6"])
    assert code == 0
    assert "general: train 30, validation 4, test 6" in stdout
    assert "coding: train 12, validation 4, test 6" in stdout
    manifest = json.loads((out / "world.json").read_text())
    assert manifest["seed"] == 2
    assert manifest["files"]["safety-train.jsonl"]["records"] == 12
    expected = make_world(
        2, train={"general": 30, "science": 12, "safety": 12, "coding": 12}, validation=4, test=6
    )
    assert read_jsonl(out / "science-test.jsonl")[0] == expected.splits["science"]["test"]

    code, _, err = cli([*args])
    assert code == 2 and "output exists" in err and err.count("\n") == 1
    code, _, _ = cli([*args, "--overwrite"])
    assert code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--test", "-1"], "error: --test: expected a non-negative integer, got -1"),
        (["--train-skill", "-5"], "error: --train-skill: expected a non-negative integer, got -5"),
        (["--seed", "abc"], "error: "),
    ],
)
def test_world_make_command_bad_values_exit_2(cli, tmp_path: Path, extra: list[str], message: str) -> None:
    code, _, err = cli(["world", "make", str(tmp_path / "w"), *extra])
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "w").exists()


def test_world_package_stays_a_data_stage_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, skillmerge.world, skillmerge.world.command\n"
        "names = ('skillmerge', 'torch', 'transformers')\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(names))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    allowed = ("skillmerge.world", "skillmerge.data", "skillmerge.errors", "skillmerge.atomic")
    strays = [m for m in loaded.split() if m != "skillmerge" and not m.startswith(allowed)]
    assert not strays
