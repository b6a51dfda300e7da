"""``skillmerge run SPEC`` and ``skillmerge status RUN_DIR``: thin layers over the runner and status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def run_command(
    spec: Annotated[Path, typer.Argument(help="Experiment spec YAML.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default: runs/<spec file name>).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate, print the plan with estimated cost; run nothing.")
    ] = False,
    only: Annotated[
        str | None,
        typer.Option("--only", help="Run only steps whose id matches this glob (or prefix), and their deps."),
    ] = None,
    eval_limit: Annotated[
        int | None,
        typer.Option(
            "--eval-limit", min=1, help="At most this many items per suite (overrides the spec's eval.limit)."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Steps at once, each on cores/N threads: merges, evaluations and CPU training "
            "(GPU training stays one at a time).",
        ),
    ] = 1,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="local (this machine) or ray (each step a Ray task; needs skillmerge[ray]).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster address, e.g. 10.0.0.1:6379 (default: RAY_ADDRESS, else Ray on this machine).",
        ),
    ] = None,
) -> None:
    """Run an experiment: train, merge and evaluate every step of SPEC, skipping finished ones."""
    from skillmerge.experiment.runner import run_experiment

    run_dir = out if out is not None else Path("runs") / spec.stem
    summary = run_experiment(
        spec,
        run_dir,
        dry_run=dry_run,
        only=only,
        eval_limit=eval_limit,
        workers=workers,
        executor=executor,
        address=address,
        echo=typer.echo,
    )
    if not dry_run and not summary.ok:
        failed = [o.id for o in summary.outcomes if o.outcome == "failed"]
        typer.echo(
            f"failed: {', '.join(failed)} (error.json in each step directory); re-run to retry", err=True
        )
        raise typer.Exit(1)


def status_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `skillmerge run`.")],
    spec: Annotated[
        Path | None, typer.Option("--spec", help="The spec: also lists steps not started (pending).")
    ] = None,
) -> None:
    """Show which steps of a run are done, failed or pending."""
    from skillmerge.experiment.status import run_status, summarize

    steps = None
    if spec is not None:
        from skillmerge.experiment.dag import expand
        from skillmerge.experiment.spec import load_spec

        steps = expand(load_spec(spec))
    states = run_status(run_dir, steps)
    for name, state in states.items():
        typer.echo(f"{state:<7} {name}")
    typer.echo(summarize(states))
