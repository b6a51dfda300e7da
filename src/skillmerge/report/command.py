"""``skillmerge report RUN_DIR``: a thin layer over :func:`skillmerge.report.run`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `skillmerge run`.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Report directory (default: RUN_DIR/report).")
    ] = None,
) -> None:
    """Write report.html, report.md and results.json (tables, plots, cost ratios) for a run."""
    from skillmerge.errors import UsageError
    from skillmerge.report import run

    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: run directory does not exist")
    target = run(run_dir, out=out)
    typer.echo(f"wrote {target / 'report.html'}")
