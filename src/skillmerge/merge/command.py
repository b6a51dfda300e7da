"""``skillmerge merge CONFIG --out DIR [--dry-run] [--overwrite] [--compute-dtype D]``: a thin layer over
``merge.run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def merge_command(
    config: Annotated[Path, typer.Argument(help="Merge config YAML (skillmerge or mergekit form).")],
    out: Annotated[Path, typer.Option("--out", help="Output model directory (written atomically).")],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Validate and print the plan (tensors, bytes, memory); write nothing."
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output directory.")
    ] = False,
    compute_dtype: Annotated[
        str | None,
        typer.Option(
            "--compute-dtype",
            help="float32 (default: merge in fp32, cast once), or dtype / float16 / bfloat16: compute in "
            "that precision as mergekit does, to reproduce a half-precision mergekit merge bit for bit.",
        ),
    ] = None,
) -> None:
    """Merge models tensor by tensor (task arithmetic, TIES, DARE, ...) into an HF directory."""
    from skillmerge.merge import run

    result = run(config, out, overwrite=overwrite, dry_run=dry_run, compute_dtype=compute_dtype)
    typer.echo(result.description)
    if dry_run:
        typer.echo("dry run: nothing written")
        return
    rate = (result.bytes_read + result.bytes_written) / max(result.wall_seconds, 1e-9) / 1024**2
    typer.echo(
        f"wrote {result.out_dir} in {result.wall_seconds:.1f} s ({rate:.0f} MiB/s read+write), "
        f"peak RSS {result.peak_rss_bytes / 1024**3:.2f} GiB, weights {result.weights_fingerprint[:12]}"
        if result.weights_fingerprint
        else f"wrote {result.out_dir}"
    )
