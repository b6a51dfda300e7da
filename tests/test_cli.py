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
    assert report["total"]["skipped"] == 2


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
