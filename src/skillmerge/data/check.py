"""``skillmerge data check``: validate chat JSONL files and count what training would see.

Per file and in total: examples, assistant turns, characters and skipped bad lines (with reasons); with a
tokenizer also tokens, loss tokens (assistant targets), truncated and dropped examples under ``max_len``
(policy of :func:`skillmerge.data.tokenize.tokenize_record`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from skillmerge.data.records import ChatRecord, ReadReport, iter_jsonl
from skillmerge.data.templates import check_tokenizer, get_template, tokenizer_name
from skillmerge.data.tokenize import TokenizeStats, iter_tokenized
from skillmerge.errors import DataError, ModelError


@dataclass
class FileCheck:
    """Counts for one file (or the total, with ``path="total"``)."""

    path: str
    n_examples: int = 0
    n_turns: int = 0
    n_chars: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    tokens: TokenizeStats | None = None

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "examples": self.n_examples,
            "assistant_turns": self.n_turns,
            "chars": self.n_chars,
            "skipped": [{"line": line, "reason": reason} for line, reason in self.skipped],
        }
        if self.tokens is not None:
            out.update(
                tokens=self.tokens.n_tokens,
                loss_tokens=self.tokens.n_loss_tokens,
                truncated=self.tokens.n_truncated,
                dropped=self.tokens.n_dropped,
            )
        return out


@dataclass
class CheckReport:
    files: list[FileCheck]
    total: FileCheck
    template: str | None = None
    tokenizer: str | None = None
    max_len: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "tokenizer": self.tokenizer,
            "max_len": self.max_len,
            "files": [f.to_dict() for f in self.files],
            "total": self.total.to_dict(),
        }

    def skipped_lines(self) -> list[str]:
        """Every skipped line as ``FILE:LINE: reason``."""
        return [f"{f.path}:{line}: {reason}" for f in self.files for line, reason in f.skipped]


def _counted(records: Iterable[ChatRecord], check: FileCheck) -> Iterator[ChatRecord]:
    for record in records:
        check.n_examples += 1
        check.n_turns += record.n_turns
        check.n_chars += record.n_chars
        yield record


def _load_tokenizer(tokenizer: PreTrainedTokenizerBase | str | Path) -> PreTrainedTokenizerBase:
    """A tokenizer object, or one loaded offline from a local directory."""
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    path = Path(tokenizer)
    if not path.is_dir():
        raise ModelError(f"{path}: tokenizer directory not found")
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot load tokenizer ({err})") from None


def check_files(
    paths: Iterable[str | Path],
    *,
    tokenizer: PreTrainedTokenizerBase | str | Path | None = None,
    template: str = "model",
    max_len: int | None = None,
    skip_bad: bool = False,
) -> CheckReport:
    """Read every file and count; raises :class:`DataError` on the first bad line unless ``skip_bad``.

    With a tokenizer, the template is checked against it first (:class:`TemplateError` before any file is
    read) and each record is tokenized as training would tokenize it.
    """
    chat_template = get_template(template)  # an unknown name fails before any loading
    tok = None if tokenizer is None else _load_tokenizer(tokenizer)
    if tok is not None:
        check_tokenizer(chat_template, tok)
    total = FileCheck("total", tokens=None if tok is None else TokenizeStats())
    files: list[FileCheck] = []
    for path in paths:
        read = ReadReport(str(path))
        check = FileCheck(str(path), tokens=None if tok is None else TokenizeStats())
        records = _counted(iter_jsonl(path, skip_bad=skip_bad, report=read), check)
        if tok is not None and check.tokens is not None:
            for _ in iter_tokenized(records, tok, chat_template, max_len, check.tokens):
                pass  # only the counts are wanted
        else:
            for _ in records:
                pass
        check.skipped = list(read.skipped)
        if check.n_examples == 0:
            # training would stop on it later; a check that passes must mean the file can be trained on
            what = f"all {len(read.skipped)} non-blank lines are bad" if read.skipped else "empty or blank"
            raise DataError(path, None, f"no chat records ({what})")
        files.append(check)
        total.n_examples += check.n_examples
        total.n_turns += check.n_turns
        total.n_chars += check.n_chars
        total.skipped.extend(check.skipped)
        if total.tokens is not None and check.tokens is not None:
            total.tokens.add(check.tokens)
    return CheckReport(
        files,
        total,
        template=chat_template.name if tok is not None else None,
        tokenizer=None if tok is None else tokenizer_name(tok),
        max_len=max_len,
    )


def check_table(report: CheckReport) -> Table:
    """A rich table: one row per file and a total row."""
    with_tokens = report.total.tokens is not None
    title = "data check"
    if with_tokens:
        title += f" — tokenizer {report.tokenizer}, template {report.template}"
        if report.max_len is not None:
            title += f", max_len {report.max_len}"
    table = Table(title=title)
    table.add_column("file", overflow="fold")
    columns = ["examples", "turns", "chars", "skipped"]
    if with_tokens:
        columns += ["tokens", "loss tokens", "truncated", "dropped"]
    for column in columns:
        table.add_column(column, justify="right")
    for i, check in enumerate([*report.files, report.total]):
        cells = [check.n_examples, check.n_turns, check.n_chars, check.n_skipped]
        if check.tokens is not None:
            t = check.tokens
            cells += [t.n_tokens, t.n_loss_tokens, t.n_truncated, t.n_dropped]
        is_total = i == len(report.files)
        table.add_row(
            check.path,
            *(f"{c:,}" for c in cells),
            style="bold" if is_total else None,
            end_section=not is_total,
        )
    return table


def render_report(report: CheckReport, console: Console | None = None) -> None:
    """Print the table, then every skipped line as ``FILE:LINE: reason``."""
    console = console or Console()
    console.print(check_table(report))
    for line in report.skipped_lines():
        console.print(f"skipped {line}", markup=False, highlight=False)
