"""``skillmerge judge ...``: judge completions in a CSV file, and measure the judge against human labels.

Plain functions with typer annotations, so the CLI registers them as they are (``app.command("refusal")``)
and tests call them directly.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from skillmerge.atomic import atomic_file
from skillmerge.errors import DataError, UsageError
from skillmerge.evaluate.judges import judge_all, make_judge


def read_csv_columns(file: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of ``file`` as dicts; a named column that is missing, or text that is not UTF-8, is an error."""
    if not file.is_file():
        raise UsageError(f"{file}: no such file")
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(file, line, f"not valid UTF-8 (byte 0x{raw[err.start]:02x})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    for column in columns:
        if column not in header:
            found = ", ".join(header) if header else "none"
            raise DataError(file, 1, f"no column {column!r} (columns: {found})")
    return [{c: row.get(c) or "" for c in columns} for row in reader]


def judge_refusal_command(
    file: Annotated[Path, typer.Argument(help="CSV file with one prompt and one completion per row.")],
    prompt_column: Annotated[str, typer.Option(help="Column holding the prompts.")] = "prompt",
    completion_column: Annotated[str, typer.Option(help="Column holding the completions.")] = "completion",
    out: Annotated[Path | None, typer.Option(help="Write the JSON lines here instead of stdout.")] = None,
    judge: Annotated[
        str, typer.Option(help="patterns, lm:MODEL_DIR, or openai:BASE_URL#MODEL (model name optional).")
    ] = "patterns",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> list[dict[str, Any]]:
    """Judge every row: one JSON line ``{"row": i, "verdict": "comply"|"refuse", "reason": ...}`` per row
    (``row`` counts data rows from 0)."""
    rows = read_csv_columns(file, (prompt_column, completion_column))
    verdicts = judge_all(make_judge(judge), [(r[prompt_column], r[completion_column]) for r in rows])
    records = [{"row": i, "verdict": v.verdict, "reason": v.reason} for i, v in enumerate(verdicts)]
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    if out is None:
        for line in lines:
            typer.echo(line)
    else:
        with atomic_file(out, overwrite=overwrite) as handle:
            handle.writelines(line + "\n" for line in lines)
    return records


def judge_validate_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Human-labelled CSVs (default: the XSTest completions_*_gpt4labels.csv files)."),
    ] = None,
    judge: Annotated[
        str, typer.Option(help="patterns, lm:MODEL_DIR, or openai:BASE_URL#MODEL (model name optional).")
    ] = "patterns",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> list[dict[str, Any]]:
    """Accuracy and refusal precision/recall/F1 of the judge per labelled file (compliance vs refusal)."""
    from skillmerge.evaluate.judges.validate import metrics_table, validate_files

    metrics = validate_files(make_judge(judge), paths or None)
    table = [m.to_dict() for m in metrics]
    typer.echo(json.dumps(table, indent=2) if as_json else metrics_table(metrics))
    return table
