"""Commands that import their stage only when they run, so ``skillmerge --help`` and ``version`` stay fast.

The stage commands live beside their stage (``<stage>/command.py``) and pull in pydantic, the suites and,
when they run, torch. The top-level group lists each one by name and one-line help (stored here, checked
against the real docstring by ``tests/test_cli_startup.py``) and builds the real Typer command the first time
it is resolved — for running it, for its own ``--help`` and for shell completion.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

try:  # typer >= 0.25 vendors its own copy of click
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer runs on click itself
    import click  # type: ignore[no-redef]


# Help is click's plain layout, not typer's rich tables: rich cuts long flag names (--gradient-checkpoint…)
# to fit 80 columns, where click wraps the description instead; and rich costs ~0.1 s of start-up.
HELP_MARKUP = None


@dataclass(frozen=True)
class LazyCommand:
    """A command named on the CLI whose code loads on first use.

    ``target`` is ``"module:function"`` for a command, or a tuple of ``(name, "module:function")`` pairs for
    a sub-group (``judge refusal``, ``world make``); ``summary`` is the first paragraph of its help.
    """

    name: str
    summary: str
    target: str | tuple[tuple[str, str], ...]

    def build(self) -> click.Command:
        """The real click command (importing its stage), named ``self.name``."""
        sub = typer.Typer(
            cls=LazyGroup, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=HELP_MARKUP
        )
        if isinstance(self.target, str):
            sub.command(self.name)(_resolve(self.target))
        else:
            sub.info.help = self.summary
            sub.info.no_args_is_help = True
            sub.callback()(_no_options)  # a callback makes Typer build a group even for one command
            for name, target in self.target:
                sub.command(name)(_resolve(target))
        command = typer.main.get_command(sub)
        command.name = self.name
        return command


def _no_options() -> None:
    pass


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class _Placeholder(TyperCommand):
    """What the group shows in its command list until the command is resolved."""

    def __init__(self, lazy: LazyCommand) -> None:
        super().__init__(lazy.name, help=lazy.summary)
        self.lazy = lazy


class LazyGroup(TyperGroup):
    """A Typer group whose ``lazy_commands`` are listed at once and built on first resolution."""

    lazy_commands: tuple[LazyCommand, ...] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for lazy in self.lazy_commands:
            self.commands.setdefault(lazy.name, _Placeholder(lazy))

    def load(self, name: str) -> click.Command | None:
        """The real command ``name`` (building it once), or None when there is none."""
        command = self.commands.get(name)
        if isinstance(command, _Placeholder):
            command = command.lazy.build()
            self.commands[name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list with each summary whole (click cuts them at ~45 characters), wrapped."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands[name]
            if not command.hidden:
                rows.append((name, " ".join((command.help or "").split("\n\n")[0].split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and isinstance(command, _Placeholder):
            command = self.load(name)
        return name, command, rest


__all__ = ["HELP_MARKUP", "LazyCommand", "LazyGroup"]
