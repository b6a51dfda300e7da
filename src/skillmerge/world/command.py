"""``skillmerge world make OUT [--seed N] [--train-general N] [--train-skill N] [--validation N] [--test N]
[--overwrite]``: write the synthetic skill world (:func:`skillmerge.world.write_world`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skillmerge.errors import UsageError


def _non_negative(option: str, value: int) -> int:
    if value < 0:
        raise UsageError(f"{option}: expected a non-negative integer, got {value}")
    return value


def world_make_command(
    out: Annotated[Path, typer.Argument(help="Output directory (written atomically).")],
    seed: Annotated[int, typer.Option(help="Generation seed.")] = 0,
    train_general: Annotated[int, typer.Option(help="Train records of the general mix.")] = 512,
    train_skill: Annotated[
        int, typer.Option(help="Train records of each skill (science, safety, coding).")
    ] = 256,
    validation: Annotated[int, typer.Option(help="Validation records per dataset.")] = 32,
    test: Annotated[int, typer.Option(help="Test records per dataset.")] = 64,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Write the synthetic skill world: general, science, safety and coding, each train/validation/test."""
    from skillmerge.world import SKILLS, make_world, write_world

    sizes = {"general": _non_negative("--train-general", train_general)}
    sizes.update(dict.fromkeys(SKILLS, _non_negative("--train-skill", train_skill)))
    world = make_world(
        seed,
        train=sizes,
        validation=_non_negative("--validation", validation),
        test=_non_negative("--test", test),
    )
    path = write_world(out, world, overwrite=overwrite)
    typer.echo(f"wrote {path} (seed {seed})")
    for name, by_split in world.counts().items():
        typer.echo(f"  {name}: " + ", ".join(f"{split} {n}" for split, n in by_split.items()))
