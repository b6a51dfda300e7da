"""Start-up of the CLI: ``--help``, ``--version`` and ``version`` import no stage and no heavy library;
stage commands load on first use and their listed summaries match their real docstrings; help never cuts a
flag name."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest
import typer
import typer.testing

from skillmerge import __version__
from skillmerge.cli import STAGE_COMMANDS, app, run_cli
from skillmerge.lazy_commands import LazyCommand

HEAVY = ("torch", "transformers", "matplotlib", "accelerate", "safetensors", "numpy", "rich", "yaml")

PROBE = """
import contextlib, io, json, sys
from skillmerge.cli import run_cli
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    code = run_cli(sys.argv[1:])
stages = sorted({m.split(".")[1] for m in sys.modules if m.startswith("skillmerge.") and m.count(".") >= 1})
print(json.dumps({"code": code, "modules": sorted(sys.modules), "stages": stages, "out": out.getvalue()}))
"""


def _probe(*argv: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["version"], ["data", "--help"]])
def test_help_and_version_import_nothing_heavy(argv: list[str]) -> None:
    seen = _probe(*argv)
    assert seen["code"] == 0
    # typer validates every option it parses with pydantic: a subcommand's help parses the root's options.
    heavy = HEAVY + (("pydantic",) if argv != ["data", "--help"] else ())
    loaded = [name for name in heavy if name in seen["modules"]]
    assert loaded == [], f"skillmerge {' '.join(argv)} imported {loaded}"
    # Only the CLI's own modules: no stage (train, merge, evaluate, experiment, report, world, models, data).
    assert set(seen["stages"]) <= {"cli", "errors", "lazy_commands"}, seen["stages"]


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"skillmerge {__version__}"


def test_a_stage_command_loads_when_it_runs() -> None:
    seen = _probe("merge", "--help")
    assert seen["code"] == 0
    assert "merge" in seen["stages"] and "train" not in seen["stages"]
    assert "--out" in seen["out"]


@pytest.mark.parametrize("lazy", STAGE_COMMANDS, ids=lambda lazy: lazy.name)
def test_listed_summary_is_the_commands_own(lazy: LazyCommand) -> None:
    command = lazy.build()
    assert command.name == lazy.name
    first_paragraph = " ".join(inspect.cleandoc(command.help or "").split("\n\n")[0].split())
    assert " ".join(lazy.summary.split()) == first_paragraph


def test_every_command_is_listed_once_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--help"]) == 0
    listed = capsys.readouterr().out.split("Commands:")[1]
    names = [line.split()[0] for line in listed.splitlines() if line.startswith("  ") and line[2] != " "]
    expected = [_name(c) for c in app.registered_commands] + [g.name for g in app.registered_groups]
    expected += [lazy.name for lazy in STAGE_COMMANDS]
    assert sorted(names) == sorted(expected)
    assert len(names) == len(set(names))


def _name(info: typer.models.CommandInfo) -> str:
    return info.name or info.callback.__name__.replace("_", "-")


def _all_commands() -> list[list[str]]:
    paths = [[_name(c)] for c in app.registered_commands]
    paths += [["data", _name(c)] for g in app.registered_groups for c in g.typer_instance.registered_commands]
    for lazy in STAGE_COMMANDS:
        if isinstance(lazy.target, str):
            paths.append([lazy.name])
        else:
            paths += [[lazy.name, name] for name, _ in lazy.target]
    return paths


@pytest.mark.parametrize("columns", ["60", "80"])
def test_help_shows_every_flag_name_whole(columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    runner = typer.testing.CliRunner()
    for path in _all_commands():
        result = runner.invoke(app, [*path, "--help"], terminal_width=int(columns))
        assert result.exit_code == 0, (path, result.output)
        command = typer.main.get_command(app)
        ctx = command.make_context("skillmerge", [*path, "--help"], resilient_parsing=True)
        for name in path:
            sub = ctx.command.get_command(ctx, name) if hasattr(ctx.command, "get_command") else None
            if sub is None:
                break
            if hasattr(ctx.command, "load"):
                sub = ctx.command.load(name)
            ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
        for param in ctx.command.params:
            for flag in [*param.opts, *getattr(param, "secondary_opts", [])]:
                if flag.startswith("--"):
                    assert flag in result.output, f"{' '.join(path)} --help at {columns} columns cuts {flag}"


def test_console_entry_freezes_the_heap_before_exiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` freezes the garbage collector before exiting, so the interpreter's final collections skip the
    objects torch's import created; the exit code still comes through."""
    import gc
    import signal

    from skillmerge.cli import main

    monkeypatch.setattr(sys, "argv", ["skillmerge", "--version"])
    previous = signal.getsignal(signal.SIGTERM)
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as stopped:
            main()
        assert stopped.value.code == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        signal.signal(signal.SIGTERM, previous)
