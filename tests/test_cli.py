"""The CLI: subcommands exist, user errors are one line with exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from skillmerge.cli import run_cli


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_cli(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_working_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    for name in ("version", "data", "import-gguf", "fingerprint", "tiny-model", "demo"):
        assert name in out


def test_version_prints_package_and_engines(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["version"], capsys)
    assert code == 0
    assert out.startswith("skillmerge ")
    assert "torch" in out and "transformers" in out


def test_unknown_command_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["frobnicate"], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "frobnicate" in err


def test_console_script_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "skillmerge", "data", "check", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}:1: no assistant turn"
    assert "Traceback" not in proc.stderr


def test_data_check_stops_at_first_malformed_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "skill.jsonl"
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path.write_text(json.dumps(good) + "\n" + "{not json\n" + json.dumps(good) + "\n")
    code, _, err = _run(["data", "check", str(path)], capsys)
    assert code == 2
    assert err.startswith(f"error: {path}:2: malformed JSON")


def test_data_check_skip_bad_counts_skipped_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "skill.jsonl"
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    bad_role = {"messages": [{"role": "robot", "content": "q"}]}
    lines = [json.dumps(good), "{not json", json.dumps(bad_role), json.dumps(good)]
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = _run(["data", "check", str(path), "--skip-bad", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["total"]["examples"] == 2
    assert [s["line"] for s in report["files"][0]["skipped"]] == [2, 3]


def test_unknown_template_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model_dir: Path
) -> None:
    path = tmp_path / "skill.jsonl"
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path.write_text(json.dumps(good) + "\n")
    code, _, err = _run(
        ["data", "check", str(path), "--tokenizer", str(tiny_model_dir), "--template", "alpaca"], capsys
    )
    assert code == 2
    assert "alpaca" in err and "chatml" in err


def test_import_gguf_missing_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.gguf"
    code, _, err = _run(["import-gguf", str(missing), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert str(missing) in err
    assert not (tmp_path / "out").exists()


def _write_records(path: Path, n: int, *, extra_prompt: str | None = None) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"a{i}"},
            ],
            "source": "even" if i % 2 == 0 else "odd",
        }
        for i in range(n)
    ]
    if extra_prompt is not None:
        rows.append(
            {"messages": [{"role": "user", "content": extra_prompt}, {"role": "assistant", "content": "x"}]}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_data_sample_writes_nested_caps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "skill.jsonl"
    _write_records(src, 40)
    code, _, _ = _run(["data", "sample", str(src), "--caps", "3,10", "--out", str(tmp_path / "s")], capsys)
    assert code == 0
    small = [json.loads(x) for x in (tmp_path / "s" / "cap-3.jsonl").read_text().splitlines()]
    large = [json.loads(x) for x in (tmp_path / "s" / "cap-10.jsonl").read_text().splitlines()]
    assert len(small) == 6 and len(large) == 20
    assert all(r in large for r in small)
    code, _, err = _run(["data", "sample", str(src), "--caps", "3", "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "--overwrite" in err


def test_data_split_and_mix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "skill.jsonl"
    _write_records(src, 20)
    code, _, _ = _run(["data", "split", str(src), "--val-count", "4", "--out", str(tmp_path / "sp")], capsys)
    assert code == 0
    assert len((tmp_path / "sp" / "validation.jsonl").read_text().splitlines()) == 4
    assert len((tmp_path / "sp" / "train.jsonl").read_text().splitlines()) == 16
    (tmp_path / "mix.yaml").write_text("sources:\n  skill.jsonl: 50\nseed: 1\n")
    code, out, _ = _run(
        ["data", "mix", str(tmp_path / "mix.yaml"), "--out", str(tmp_path / "m.jsonl")], capsys
    )
    assert code == 0 and "wrote 50 records" in out
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 50


def test_data_leakage_exits_1_on_a_leak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from skillmerge.data.sources import load_prompts

    harm = load_prompts("harmbench")[7].prompt
    clean, leaky = tmp_path / "clean.jsonl", tmp_path / "leaky.jsonl"
    _write_records(clean, 5)
    _write_records(leaky, 5, extra_prompt="  " + harm.upper() + " ")
    code, out, _ = _run(["data", "leakage", str(clean), "--against", "harmbench"], capsys)
    assert code == 0 and "0 leaked" in out
    code, out, _ = _run(["data", "leakage", str(leaky), "--against", "harmbench", "--json"], capsys)
    assert code == 1
    assert json.loads(out)["n_leaked_records"] == 1


def test_eval_suite_options_parse_as_yaml_values() -> None:
    from skillmerge.errors import UsageError
    from skillmerge.evaluate.command import parse_suite_options

    assert parse_suite_options(["coding.samples=0", "coding.k=[1, 5]", "safety.limit=3"]) == {
        "coding": {"samples": 0, "k": [1, 5]},
        "safety": {"limit": 3},
    }
    with pytest.raises(UsageError, match=r"SUITE\.KEY=VALUE"):
        parse_suite_options(["samples=0"])


def test_stage_commands_are_wired(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["eval", "--help"], ["eval-code", "--help"], ["judge", "refusal", "--help"]):
        code, out, _ = _run(args, capsys)
        assert code == 0 and "Usage" in out


def test_cli_import_does_not_load_torch() -> None:
    # `skillmerge --help` must stay instant: stage commands import their heavy engines only when they run.
    code = "import sys, skillmerge.cli; sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
