"""``skillmerge train``: an optional CONFIG.yaml, ``--set KEY=VALUE`` and flags → :class:`TrainConfig` → run.

Every flag is a :class:`TrainConfig` field, made from the config model itself (its description is the flag's
help), so a new field is a new flag with nothing to retype here:

- a top-level field ``name_with_parts`` is ``--name-with-parts``; a yes/no field is ``--name/--no-name``;
- ``data.*`` fields drop the section (``--max-len``, ``--template``; ``data.files`` is ``--data``);
- ``lora.*`` fields are ``--lora-*`` (``lora.enabled`` is ``--lora``);
- a list field is repeatable (``--data a.jsonl --data b.jsonl``).

``--set KEY=VALUE`` reaches any field by its dotted name with a YAML value (``--set lora.dropout=0.1``,
``--set max_grad_norm=null``). Precedence, later wins: ``--preset`` (or the YAML's ``preset:``) < YAML <
``--set`` < flags; only what is given overrides (:func:`skillmerge.train.config.layer`, which also owns the
rule that ``grad_accum`` and ``effective_batch_size`` exclude each other).
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel

from skillmerge.config_yaml import load_yaml
from skillmerge.errors import UsageError
from skillmerge.train.config import PRESETS, TrainConfig, layer, read_config_yaml

# How sections and a few fields are spelled as flags (everything else follows the rules above).
SECTION_PREFIX = {"data": "", "lora": "lora-"}
FLAG_NAMES: dict[str, tuple[str, ...]] = {
    "data.files": ("--data",),
    "data.packing": ("--packing/--bucketing",),
    "lora.enabled": ("--lora/--no-lora",),
    "effective_batch_size": ("--effective-batch-size", "--effective-batch"),
}


@dataclass(frozen=True)
class Flag:
    """One command-line flag for the TrainConfig field at ``path`` (dotted)."""

    path: str
    names: tuple[str, ...]
    kind: Any  # the Python type typer parses: bool, int, float, str or list[str]
    help: str

    @property
    def parameter(self) -> str:
        return self.path.replace(".", "__")


def _field_type(annotation: Any) -> tuple[Any, tuple[str, ...]]:
    """(the type a flag parses, the choices of a Literal) for a field annotation."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _field_type(inner)
    if typing.get_origin(annotation) is Literal:
        return str, tuple(str(v) for v in typing.get_args(annotation))
    if typing.get_origin(annotation) is list:
        _, choices = _field_type(typing.get_args(annotation)[0])
        return list[str], choices
    if annotation in (bool, int, float, str):
        return annotation, ()
    raise TypeError(f"no flag for a field of type {annotation!r}")


def config_flags(model: type[BaseModel] = TrainConfig, prefix: str = "", flag_prefix: str = "") -> list[Flag]:
    """The flags of every field of ``model`` (recursing into its sections), in declaration order."""
    flags: list[Flag] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            flags += config_flags(field.annotation, f"{path}.", SECTION_PREFIX[name])
            continue
        kind, choices = _field_type(field.annotation)
        if field.description is None:
            raise TypeError(f"TrainConfig field {path} has no description (it is the flag's help)")
        help_text = field.description + (f" One of: {', '.join(choices)}." if choices else "")
        stem = "--" + flag_prefix + name.replace("_", "-")
        names = FLAG_NAMES.get(path) or ((f"{stem}/--no-{stem[2:]}",) if kind is bool else (stem,))
        flags.append(Flag(path, names, kind, help_text))
    return flags


FLAGS = config_flags()


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items → nested fields; an unknown key is named with its closest field."""
    known = [flag.path for flag in FLAGS]
    fields: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. lora.dropout=0.1")
        if key not in known:
            close = get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"--set {item!r}: no TrainConfig field {key!r}{hint}")
        try:
            value = load_yaml(text) if text.strip() else None
        except Exception:  # yaml.YAMLError and friends: one line naming the item
            raise UsageError(f"--set {item!r}: the value is not valid YAML") from None
        _put(fields, key, value)
    return fields


def _put(tree: dict[str, Any], path: str, value: Any) -> None:
    *sections, name = path.split(".")
    for section in sections:
        tree = tree.setdefault(section, {})
    tree[name] = value


def _train(config: Path | None, preset: str | None, set_items: list[str] | None, **given: Any) -> None:
    from skillmerge.train import run
    from skillmerge.train.config import build_train_config

    fields: dict[str, Any] = read_config_yaml(config) if config is not None else {}
    if preset is not None:
        fields["preset"] = preset
    fields = layer(fields, parse_set(set_items or []))
    flags: dict[str, Any] = {}
    for flag in FLAGS:
        value = given[flag.parameter]
        if value is not None and value != []:  # not given (typer reports an absent list as [] or None)
            _put(flags, flag.path, value)
    fields = layer(fields, flags)  # sections merge: a --max-len flag keeps the YAML's other data fields
    where = str(config) if config is not None else "train"
    result = run(build_train_config(fields, where=where))
    from accelerate import PartialState

    if PartialState().is_main_process:  # under `accelerate launch` every process gets here
        typer.echo(f"wrote {result.out} (final loss {result.final_loss:.4f})")


def _make_command() -> Any:
    """``train_command`` with one typer parameter per :data:`FLAGS` entry, plus CONFIG, --preset and --set."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter(
            "config",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=None,
            annotation=Annotated[
                Path | None,
                typer.Argument(help="Training YAML (TrainConfig fields; --set and flags override it)."),
            ],
        )
    ]
    for flag in FLAGS:
        option = typer.Option(*flag.names, help=flag.help, show_default=False)
        parameters.append(
            inspect.Parameter(
                flag.parameter, keyword, default=None, annotation=Annotated[flag.kind | None, option]
            )
        )
    presets = ", ".join(PRESETS)
    parameters.append(
        inspect.Parameter(
            "preset",
            keyword,
            default=None,
            annotation=Annotated[
                str | None, typer.Option(help=f"Defaults to start from: {presets} (first is default).")
            ],
        )
    )
    parameters.append(
        inspect.Parameter(
            "set_items",
            keyword,
            default=None,
            annotation=Annotated[
                list[str] | None,
                typer.Option(
                    "--set", help="KEY=VALUE for any TrainConfig field (dotted, YAML value); repeatable."
                ),
            ],
        )
    )

    def train_command(**kwargs: Any) -> None:
        """Supervised finetuning (full or LoRA) on chat data; loss on assistant tokens only.

        Flags are TrainConfig fields (docs: skillmerge.train.command); precedence: preset < YAML < --set <
        flags.
        """
        _train(kwargs.pop("config"), kwargs.pop("preset"), kwargs.pop("set_items"), **kwargs)

    train_command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    train_command.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
    return train_command


train_command = _make_command()

__all__ = ["FLAGS", "Flag", "config_flags", "parse_set", "train_command"]
