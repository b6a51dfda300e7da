"""Faults a new user meets, each a class: one line naming the culprit, exit 2, nothing written.

Outputs are checked as strictly as inputs (a merge that overflows publishes nothing), numbers read the
same in every YAML, impossible output paths are refused on every command, data files report the real line
of a bad byte, killed writes leave no temporaries behind once the output is written again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model_factory import tiny_llama
from skillmerge.cli import run_cli

GOOD = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}]}


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run_cli(args)
    err = capsys.readouterr().err.strip()
    return code, err


def _one_line_exit_2(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for seed, name in enumerate(("base", "a", "b")):
        tiny_llama(seed=seed).save_pretrained(root / name)
    return root


def _merge_yaml(folder: Path, models: Path, text: str) -> Path:
    path = folder / "merge.yaml"
    path.write_text(text.replace("MODELS", str(models)), encoding="utf-8")
    return path


# 1. a merge whose output is not finite publishes nothing


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (  # a weight float32 cannot hold is refused with the config
            "method: linear\nmodels: [{model: MODELS/a, weight: 1.0e+39}]\n",
            ["models.0.weight", "float32", "1e+39"],
        ),
        (
            "method: task_arithmetic\nbase_model: MODELS/base\nmodels: [{model: MODELS/a}]\n"
            "parameters: {lambda: -4.0e+38}\n",
            ["parameters", "lambda", "float32"],
        ),
        (  # finite weights whose sum overflows float32 (layer norms are 1.0: 3e38 + 3e38 = inf)
            "method: linear\nparameters: {normalize: false}\n"
            "models: [{model: MODELS/a, weight: 3.0e+38}, {model: MODELS/b, weight: 3.0e+38}]\n",
            ["non-finite", "norm.weight", "float32", "nothing was written"],
        ),
        (  # finite in float32, beyond float16's 65504
            "method: linear\ndtype: float16\nparameters: {normalize: false}\n"
            "models: [{model: MODELS/a, weight: 1.0e+5}]\n",
            ["non-finite", "float16", "nothing was written"],
        ),
        (  # the sliced (elementwise) path of a base-model method: τ ~ 0.05, × 3e38 × λ 100 overflows
            "method: task_arithmetic\nbase_model: MODELS/base\nparameters: {lambda: 100}\n"
            "models: [{model: MODELS/a, weight: 3.0e+38}, {model: MODELS/b, weight: 3.0e+38}]\n",
            ["non-finite", "nothing was written"],
        ),
        (  # a method that is not elementwise (TIES ranks entries)
            "method: ties\nbase_model: MODELS/base\nparameters: {normalize: false, lambda: 100}\n"
            "models: [{model: MODELS/a, weight: 3.0e+38, parameters: {density: 0.5}},"
            " {model: MODELS/b, weight: 3.0e+38, parameters: {density: 0.5}}]\n",
            ["non-finite", "nothing was written"],
        ),
    ],
)
def test_a_merge_that_cannot_be_represented_is_refused_and_writes_nothing(
    tmp_path: Path, models: Path, capsys: pytest.CaptureFixture[str], text: str, fragments: list[str]
) -> None:
    config = _merge_yaml(tmp_path, models, text)
    code, err = _cli(["merge", str(config), "--out", str(tmp_path / "out")], capsys)
    _one_line_exit_2(code, err, *fragments)
    assert not (tmp_path / "out").exists() and _hidden(tmp_path) == []


def test_an_ordinary_merge_still_passes_the_output_check(
    tmp_path: Path, models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _merge_yaml(tmp_path, models, "method: linear\nmodels: [{model: MODELS/a}, {model: MODELS/b}]\n")
    code, err = _cli(["merge", str(config), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err and (tmp_path / "out" / "model.safetensors").is_file()


# 2. one reading of numbers in every YAML: 5e-1 is a number, '5e-1' (quoted) a string


@pytest.mark.parametrize(
    "text",
    [
        "method: linear\nmodels: [{model: MODELS/a, weight: 5e-1}, {model: MODELS/b, weight: 5E-1}]\n",
        "merge_method: linear\nmodels:\n  - model: MODELS/a\n    parameters: {weight: 5e-1}\n"
        "  - model: MODELS/b\n    parameters: {weight: .5e0}\n",
        "merge_method: ties\nbase_model: MODELS/base\nparameters: {density: 5e-1}\n"
        "models: [{model: MODELS/a, parameters: {weight: 1e0}}]\n",
    ],
)
def test_exponent_numbers_without_a_dot_are_numbers_in_merge_yaml(
    tmp_path: Path, models: Path, text: str
) -> None:
    from skillmerge.merge.config import load_merge_config

    config = load_merge_config(_merge_yaml(tmp_path, models, text))
    if config.method == "linear":
        assert [m.weight for m in config.models] == [0.5, 0.5]
    else:
        assert config.model_params(0).density == 0.5


def test_a_quoted_number_is_still_refused_where_a_number_is_required(
    tmp_path: Path, models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _merge_yaml(tmp_path, models, "method: linear\nmodels: [{model: MODELS/a, weight: '5e-1'}]\n")
    code, err = _cli(["merge", str(config), "--out", str(tmp_path / "out")], capsys)
    _one_line_exit_2(code, err, "models.0.weight", "'5e-1'")


def test_training_and_experiment_yaml_read_numbers_the_same_way(tmp_path: Path) -> None:
    from skillmerge.config_yaml import read_yaml_mapping

    path = tmp_path / "train.yaml"
    path.write_text("lr: 1e-5\nwarmup_ratio: 3E-2\nepochs: 2\nname: '1e-5'\n", encoding="utf-8")
    assert read_yaml_mapping(path) == {"lr": 1e-5, "warmup_ratio": 0.03, "epochs": 2, "name": "1e-5"}


# 3. impossible output paths: one line, exit 2, on every command that writes


def _writers(tmp_path: Path, models: Path) -> dict[str, list[str]]:
    data = tmp_path / "chat.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": f"question {i}"}, GOOD["messages"][1]]})
             for i in range(20)]  # fmt: skip
    data.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    merge = _merge_yaml(tmp_path, models, "method: linear\nmodels: [{model: MODELS/a}, {model: MODELS/b}]\n")
    return {
        "merge": ["merge", str(merge), "--out"],
        "tiny-model": [
            "tiny-model",
            "--corpus",
            str(data),
            "--preset",
            "tiny-1m",
            "--vocab-size",
            "300",
            "--out",
        ],
        "data split": ["data", "split", str(data), "--out"],
        "world make": [
            "world",
            "make",
            "--train-general",
            "8",
            "--train-skill",
            "8",
            "--validation",
            "2",
            "--test",
            "2",
        ],
    }


@pytest.mark.parametrize("command", ["merge", "tiny-model", "data split", "world make"])
@pytest.mark.parametrize("where", ["under-a-file", "proc", "cwd", "parent-of-cwd"])
def test_an_impossible_output_path_is_one_line_exit_2(
    tmp_path: Path,
    models: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    where: str,
) -> None:
    args = _writers(tmp_path, models)[command]
    (tmp_path / "a-file").write_text("x")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = {"under-a-file": str(tmp_path / "a-file" / "out"), "proc": "/proc/skillmerge-out", "cwd": ".",
           "parent-of-cwd": ".."}[where]  # fmt: skip
    code, err = _cli([*args, out, "--overwrite"], capsys)
    _one_line_exit_2(code, err, out)
    assert (tmp_path / "a-file").read_text() == "x" and sorted(p.name for p in work.iterdir()) == []


def test_an_os_error_no_command_anticipated_is_still_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from skillmerge import atomic

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(atomic, "_prepare", refuse)  # as a read-only filesystem would answer (we run as root)
    code, err = _cli(
        ["world", "make", "--train-general", "8", "--train-skill", "8", str(tmp_path / "x")], capsys
    )
    _one_line_exit_2(code, err, str(tmp_path / "x"), "Permission denied")


# 4-5, 7. data files: the real line of a bad byte, a byte-order mark, empty files, a bounded record size


def _write(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


GOOD_LINE = json.dumps(GOOD).encode()


@pytest.mark.parametrize("command", [["data", "check"], ["data", "split", "--out", "OUT"]])
def test_an_encoding_error_is_reported_at_its_line_and_can_be_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    bad = b'{"messages": [{"role": "user", "content": "caf\xe9"}]}'  # latin-1, not UTF-8
    good = [json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, GOOD["messages"][1]]}).encode()
            for i in range(320)]  # fmt: skip
    path = _write(tmp_path / "d.jsonl", *good[:300], bad, *good[300:])  # the bad byte well past 8 KB
    args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    code, err = _cli([*args[:2], str(path), *args[2:]], capsys)
    _one_line_exit_2(code, err, f"{path}:301:", "not UTF-8")
    code, err = _cli([*args[:2], str(path), *args[2:], "--skip-bad"], capsys)
    assert code == 0, err


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    from skillmerge.data.records import read_jsonl

    path = _write(tmp_path / "excel.jsonl", b"\xef\xbb\xbf" + GOOD_LINE, GOOD_LINE)
    records, report = read_jsonl(path)
    assert len(records) == 2 and report.n_skipped == 0
    assert records[0].messages[0].content == "hello"


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \n\t\n", b"\xef\xbb\xbf\n"])
def test_an_empty_or_blank_data_file_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    code, err = _cli(["data", "check", str(path)], capsys)
    _one_line_exit_2(code, err, str(path), "no chat records")


def test_a_file_whose_every_line_is_skipped_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "bad.jsonl", b"{not json", b"[1, 2]")
    code, err = _cli(["data", "check", str(path), "--skip-bad"], capsys)
    _one_line_exit_2(code, err, "no chat records", "2 non-blank lines are bad")


def test_a_record_over_the_size_limit_is_refused_without_being_read_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from skillmerge.data import records

    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 4096)
    monkeypatch.setattr(records.iter_jsonl, "__kwdefaults__", {"skip_bad": False, "report": None,
                        "max_record_bytes": 4096})  # fmt: skip
    huge = json.dumps({"messages": [{"role": "user", "content": "x" * 20_000}]}).encode()
    path = _write(tmp_path / "huge.jsonl", GOOD_LINE, huge, GOOD_LINE)
    code, err = _cli(["data", "check", str(path)], capsys)
    _one_line_exit_2(code, err, f"{path}:2:", "longer than")
    read = records.ReadReport(str(path))
    kept = list(records.iter_jsonl(path, skip_bad=True, report=read, max_record_bytes=4096))
    assert len(kept) == 2 and [line for line, _ in read.skipped] == [2]


# 6. killed merges: temporaries removed on SIGTERM, and by the next write after SIGKILL


_SLOW_MERGE = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even when run in the background
from skillmerge.merge import engine
merge_tensor = engine.merge_tensor
def slow(*args, **kwargs):
    time.sleep(0.3)  # a long merge, so the test can signal it mid-write
    return merge_tensor(*args, **kwargs)
engine.merge_tensor = slow
from skillmerge.cli import main
sys.argv = ["skillmerge", "merge", sys.argv[1], "--out", sys.argv[2]]
main()
"""


def _start_slow_merge(tmp_path: Path, models: Path) -> tuple[subprocess.Popen[bytes], Path]:
    config = _merge_yaml(tmp_path, models, "method: linear\nmodels: [{model: MODELS/a}, {model: MODELS/b}]\n")
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_MERGE, str(config), str(out)], env=env)
    deadline = time.monotonic() + 120
    while not any(name.startswith(".out.tmp-") for name in _hidden(tmp_path)):
        assert proc.poll() is None and time.monotonic() < deadline, "the merge never started writing"
        time.sleep(0.05)
    time.sleep(0.5)  # some shards written
    return proc, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_mid_merge_removes_the_temporary(tmp_path: Path, models: Path, sig: int) -> None:
    proc, out = _start_slow_merge(tmp_path, models)
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    assert code == (143 if sig == signal.SIGTERM else 130)
    assert not out.exists() and _hidden(tmp_path) == []


def test_the_next_merge_removes_what_a_sigkill_left_and_nothing_else(
    tmp_path: Path, models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, out = _start_slow_merge(tmp_path, models)
    proc.kill()
    proc.wait(timeout=60)
    leaked = _hidden(tmp_path)
    assert len(leaked) == 1 and leaked[0].startswith(".out.tmp-")
    from skillmerge.atomic import _host

    host = _host()
    live = tmp_path / f".out.tmp-{host}-{os.getpid()}-live"  # this process is alive: in use, kept
    elsewhere = tmp_path / f".out.tmp-otherhost-{proc.pid}-remote"  # another machine's: not ours to judge
    other_output = tmp_path / f".other.tmp-{host}-{proc.pid}-x"  # another output's: untouched
    for folder in (live, elsewhere, other_output):
        folder.mkdir()
    config = tmp_path / "merge.yaml"
    code, err = _cli(["merge", str(config), "--out", str(out)], capsys)
    assert code == 0, err
    assert (out / "model.safetensors").is_file()
    assert _hidden(tmp_path) == sorted(p.name for p in (live, elsewhere, other_output))


# 9. smaller: typos named, options named, the path rule said


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("limt", 200, "eval: unknown key 'limt'; did you mean 'limit'?"),
        ("optons", {}, "eval: unknown key 'optons'; did you mean 'options'?"),
        ("genral", ["world-general"], "eval: unknown score 'genral'; did you mean 'general'?"),
    ],
)
def test_a_typo_in_the_eval_section_is_named(tmp_path: Path, key: str, value: object, fragment: str) -> None:
    import yaml

    from skillmerge.errors import UsageError
    from skillmerge.experiment.spec import load_spec

    example = Path(__file__).resolve().parents[1] / "examples" / "demo-spec.yaml"
    raw = yaml.safe_load(example.read_text(encoding="utf-8"))
    raw["eval"][key] = value
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(UsageError) as info:
        load_spec(tmp_path / "spec.yaml")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_suite_without_its_required_option_says_how_to_give_it(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(
        ["eval", str(models / "a"), "--suite", "world-general", "--out", str(tmp_path / "e")], capsys
    )
    _one_line_exit_2(code, err, "suite 'world-general' needs option 'path'", "world-general.path=")
    assert "keyword-only" not in err and not (tmp_path / "e").exists()
    code, err = _cli(
        [
            "eval",
            str(models / "a"),
            "--suite",
            "world-general",
            "--option",
            "world-general.pth=x",
            "--out",
            "e",
        ],
        capsys,
    )
    _one_line_exit_2(code, err, "suite 'world-general': unknown option 'pth' (its options: path)")


def test_a_merge_yaml_path_found_only_under_the_working_directory_names_the_rule(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(models.parent)
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "merge.yaml"
    relative = f"{models.name}/a"  # right from the working directory, wrong from the YAML's folder
    config.write_text(f"merge_method: linear\nmodels:\n  - model: {relative}\n  - model: {relative}\n")
    code, err = _cli(["merge", str(config), "--out", str(tmp_path / "out")], capsys)
    _one_line_exit_2(
        code, err, "models[0]", "read from the YAML's folder, not the working directory", "write '"
    )
    written = err.split("write '")[1].split("'")[0]
    assert (config.parent / written).resolve() == (models / "a").resolve()  # the advice is right
    config.write_text(f"merge_method: linear\nmodels:\n  - model: {written}\n  - model: {written}\n")
    code, err = _cli(["merge", str(config), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err


def test_resume_with_no_checkpoint_starts_fresh_and_says_so(
    tiny_model_dir: Path, train_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["train", "--model", str(tiny_model_dir), "--data", str(train_file), "--out", str(out)]
    args += ["--template", "chatml", "--max-len", "128", "--max-steps", "2", "--no-progress", "--resume"]
    code = run_cli(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (
        f"--resume: no checkpoint in {tmp_path / 'out.checkpoints'} yet; starting from step 0" in captured.out
    )
    assert (out / "model.safetensors").is_file() and not (tmp_path / "out.checkpoints").exists()
    straight = tmp_path / "straight"
    assert run_cli([*args[:6], str(straight), *args[7:-1]]) == 0  # the same run without --resume
    import torch
    from safetensors.torch import load_file

    a, b = load_file(out / "model.safetensors"), load_file(straight / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
