"""``data check``: per-file and total counts, skipped lines with reasons, token counts with a tokenizer."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from rich.console import Console
from transformers import PreTrainedTokenizerFast

from skillmerge.data.check import check_files, check_table, render_report
from skillmerge.data.records import ChatRecord, write_jsonl
from skillmerge.data.tokenize import tokenize_records
from skillmerge.errors import DataError, ModelError, TemplateError


@pytest.fixture
def two_files(tmp_path: Path, chat_records: list[ChatRecord]) -> tuple[Path, Path]:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(a, chat_records[:10])
    write_jsonl(b, chat_records[10:25])
    return a, b


def test_counts_per_file_and_total(two_files: tuple[Path, Path], chat_records: list[ChatRecord]) -> None:
    report = check_files(two_files)
    first, second = report.files
    assert (first.n_examples, second.n_examples, report.total.n_examples) == (10, 15, 25)
    assert first.n_turns == sum(r.n_turns for r in chat_records[:10])
    assert report.total.n_turns == sum(r.n_turns for r in chat_records[:25]) > 25  # some are multi-turn
    assert report.total.n_chars == sum(r.n_chars for r in chat_records[:25])
    assert report.total.tokens is None and "tokens" not in report.to_dict()["total"]


def test_token_counts_match_tokenization(
    two_files: tuple[Path, Path], chat_records: list[ChatRecord], tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    report = check_files(two_files, tokenizer=tiny_tokenizer, template="chatml", max_len=40)
    _, expected = tokenize_records(chat_records[:25], tiny_tokenizer, "chatml", max_len=40)
    assert report.total.tokens == expected
    assert expected.n_truncated > 0
    assert report.files[0].tokens is not None and report.files[1].tokens is not None
    assert report.files[0].tokens.n_tokens + report.files[1].tokens.n_tokens == expected.n_tokens
    assert report.to_dict()["total"]["loss_tokens"] == expected.n_loss_tokens
    assert report.template == "chatml" and report.max_len == 40


def test_tokenizer_directory_and_model_template(
    two_files: tuple[Path, Path], tiny_model_dir: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    by_path = check_files(two_files, tokenizer=tiny_model_dir, template="model")
    by_object = check_files(two_files, tokenizer=tiny_tokenizer, template="chatml")
    # the tiny tokenizer's own template is ChatML, so both count the same tokens
    assert by_path.total.tokens == by_object.total.tokens
    assert by_path.tokenizer == str(tiny_model_dir)


def test_bad_line_stops_the_check_unless_skip_bad(tmp_path: Path, two_files: tuple[Path, Path]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(two_files[0].read_text().splitlines()[0] + '\n{"messages": 1}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{bad}:2: 'messages' must be a non-empty list$"):
        check_files([two_files[0], bad])
    report = check_files([two_files[0], bad], skip_bad=True)
    assert report.files[1].n_examples == 1
    assert [line for line, _ in report.files[1].skipped] == [2, 3]
    assert report.total.n_skipped == 2
    assert report.skipped_lines()[0] == f"{bad}:2: 'messages' must be a non-empty list"
    assert report.skipped_lines()[1].startswith(f"{bad}:3: malformed JSON")
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["files"][1]["skipped"][0] == {"line": 2, "reason": "'messages' must be a non-empty list"}


def test_template_is_checked_before_any_file_is_read(
    tmp_path: Path, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(TemplateError, match=r"cannot render chat template 'model': missing chat_template"):
        check_files([tmp_path / "absent.jsonl"], tokenizer=tokenizer, template="model")


def test_missing_tokenizer_directory_is_a_model_error(two_files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nowhere: tokenizer directory not found"):
        check_files(two_files, tokenizer=tmp_path / "nowhere")


def test_table_has_a_row_per_file_and_a_total(
    two_files: tuple[Path, Path], tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    report = check_files(two_files, tokenizer=tiny_tokenizer, template="tulu")
    assert report.total.tokens is not None
    console = Console(record=True, width=250)
    console.print(check_table(report))
    text = console.export_text()
    assert "a.jsonl" in text and "b.jsonl" in text and "total" in text
    assert "loss tokens" in text
    assert f"{report.total.tokens.n_tokens:,}" in text
    render_report(report, console)  # prints without error, skipped list empty


def test_unknown_template_fails_before_the_tokenizer_is_loaded(two_files: tuple[Path, Path]) -> None:
    with pytest.raises(
        TemplateError, match=r"^unknown chat template 'alpaca'; choose one of: chatml, model, tulu$"
    ):
        check_files(two_files, tokenizer="/nonexistent/tokenizer", template="alpaca")
