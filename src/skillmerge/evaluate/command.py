"""``skillmerge eval MODEL --suite NAME ... --out DIR``: a thin layer over :func:`skillmerge.evaluate.run`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def eval_command(
    model: Annotated[Path, typer.Argument(help="Model directory (HF format, with tokenizer).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (written atomically).")],
    suite: Annotated[
        list[str] | None,
        typer.Option(
            "--suite", help="Suite to run (repeatable): general, science, safety, xstest, coding, ..."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Evaluate at most this many items per suite task.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for subsampling and sampling.")] = 0,
    lm_eval: Annotated[
        str | None,
        typer.Option(
            "--lm-eval",
            help="lm-evaluation-harness tasks, comma separated: names or local task YAML files/folders "
            "(needs lm-eval).",
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template", help="Chat template (model, chatml, tulu); default: the one trained with."
        ),
    ] = None,
    force_template: Annotated[
        bool,
        typer.Option("--force-template", help="Use --template even if the model was trained with another."),
    ] = False,
    backend: Annotated[
        str, typer.Option("--backend", help="auto (vLLM if installed + GPU), hf or vllm.")
    ] = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Prompts per generation batch.")
    ] = 16,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output directory.")
    ] = False,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="A suite option SUITE.KEY=VALUE (repeatable), e.g. coding.samples=0 or coding.k=[1,5].",
        ),
    ] = None,
) -> dict[str, Any]:
    """Evaluate a model on offline suites; write per-item JSONL, summaries, scores.json and a manifest."""
    from skillmerge.evaluate import SCORE_LABELS, run
    from skillmerge.evaluate.lm_eval_bridge import parse_tasks

    result = run(
        model,
        suite or [],
        out,
        limit=limit,
        seed=seed,
        backend=backend,
        template=template,
        force_template=force_template,
        overwrite=overwrite,
        lm_eval_tasks=parse_tasks(lm_eval),
        batch_size=batch_size,
        suite_options=parse_suite_options(option or []),
    )
    for name, metrics in result["suites"].items():
        shown = ", ".join(f"{k} {v:.4g}" for k, v in list(metrics.items())[:8])
        typer.echo(f"{name:<14} {shown}")
    scores = result["scores"]
    typer.echo(
        "scores: "
        + ", ".join(
            f"{label} {scores[key]:.1f}" for key, label in SCORE_LABELS.items() if scores[key] is not None
        )
    )
    typer.echo(f"wrote {result['out_dir']}")
    return result


def parse_suite_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["coding.samples=0"]`` → ``{"coding": {"samples": 0}}``; values are parsed as YAML."""
    import yaml

    from skillmerge.config_yaml import load_yaml
    from skillmerge.errors import UsageError

    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        suite_name, dot, field = key.partition(".")
        if not sep or not dot or not suite_name or not field:
            raise UsageError(f"--option {item!r}: expected SUITE.KEY=VALUE, e.g. coding.samples=0")
        try:
            value = load_yaml(raw)
        except yaml.YAMLError:
            raise UsageError(f"--option {item!r}: value is not a valid YAML scalar or list") from None
        options.setdefault(suite_name, {})[field] = value
    return options
