"""The ``perplexity`` suite: per-token NLL of each record's last assistant turn on a real tiny model, its
subsampling, its refusals, and where its score lands in the paper aggregates."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from conftest import make_chat_records
from skillmerge.data.records import ChatRecord, write_jsonl
from skillmerge.errors import UsageError
from skillmerge.evaluate import paper_scores
from skillmerge.evaluate.generate import HFBackend
from skillmerge.evaluate.suites import get_suite, suite_names
from skillmerge.evaluate.suites.base import Conversation

N_RECORDS = 12


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> HFBackend:
    torch.set_num_threads(1)
    backend = HFBackend.from_dir(tiny_model_dir, batch_size=4, device="cpu")
    backend.progress = False
    return backend


@pytest.fixture(scope="module")
def records() -> list[ChatRecord]:
    # Seed 3: some records have a system prompt, some two turns (scored on the last assistant turn).
    return make_chat_records(N_RECORDS, seed=3)


@pytest.fixture
def held_out(tmp_path: Path, records: list[ChatRecord]) -> Path:
    path = tmp_path / "held-out.jsonl"
    write_jsonl(path, records)
    return path


def _split(record: ChatRecord) -> tuple[Conversation, str]:
    """The conversation before the record's last assistant turn, and that turn's text."""
    last = max(i for i, m in enumerate(record.messages) if m.role == "assistant")
    prompt = [{"role": m.role, "content": m.content} for m in record.messages[:last]]
    return prompt, record.messages[last].content


def _expected_nll(backend: HFBackend, records: Sequence[ChatRecord]) -> float:
    """−Σ log p / Σ tokens, each request scored on its own (no batching shared with the suite)."""
    logps = [backend.loglikelihood([_split(r)])[0] for r in records]
    tokens = [backend.count_tokens(_split(r)[1]) for r in records]
    return -sum(logps) / sum(tokens)


def test_nll_is_pooled_per_token_and_score_is_one_over_perplexity(
    backend: HFBackend, held_out: Path, records: list[ChatRecord]
) -> None:
    assert "perplexity" in suite_names()
    assert any(len(r.messages) > 3 for r in records) and any(r.messages[0].role == "system" for r in records)
    result = get_suite("perplexity", path=held_out).run(backend)
    nll = _expected_nll(backend, records)
    assert result.metrics["nll"] == pytest.approx(nll, rel=1e-5)
    assert result.metrics["perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert result.metrics["score"] == pytest.approx(1 / result.metrics["perplexity"], rel=1e-9)
    assert 0 < result.metrics["score"] < 1 and result.metrics["nll"] > 0
    assert [item.id for item in result.items] == [r.id for r in records]
    for item, record in zip(result.items, records, strict=True):
        prompt, reply = _split(record)
        logp = backend.loglikelihood([(prompt, reply)])[0]
        assert item.completion == reply and item.prompt == prompt[-1]["content"]
        assert item.meta["tokens"] == backend.count_tokens(reply)
        assert item.meta["logprob"] == pytest.approx(logp, rel=1e-5)
        assert item.score == pytest.approx(math.exp(logp / backend.count_tokens(reply)), rel=1e-5)
    assert result.meta["unit"] == "token" and result.meta["n_items"] == N_RECORDS
    assert result.meta["units_scored"] == sum(backend.count_tokens(_split(r)[1]) for r in records)


def test_pooling_is_by_token_not_a_mean_of_item_scores(backend: HFBackend, held_out: Path) -> None:
    result = get_suite("perplexity", path=held_out).run(backend)
    mean_item_nll = sum(-math.log(item.score) for item in result.items) / len(result.items)
    assert abs(result.metrics["nll"] - mean_item_nll) > 1e-4  # replies differ in length: the two differ


def test_several_files_are_scored_together(
    backend: HFBackend, tmp_path: Path, records: list[ChatRecord]
) -> None:
    write_jsonl(tmp_path / "a.jsonl", records[:5])
    write_jsonl(tmp_path / "b.jsonl", records[5:])
    result = get_suite("perplexity", path=[tmp_path / "a.jsonl", tmp_path / "b.jsonl"]).run(backend)
    assert result.metrics["nll"] == pytest.approx(_expected_nll(backend, records), rel=1e-5)
    assert result.meta["paths"] == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]


def test_limit_subsamples_with_the_seed(
    backend: HFBackend, held_out: Path, records: list[ChatRecord]
) -> None:
    suite = get_suite("perplexity", path=held_out)
    result = suite.run(backend, limit=4, seed=5)
    keep = sorted(random.Random(5).sample(range(N_RECORDS), 4))
    chosen = [records[i] for i in keep]
    assert [item.id for item in result.items] == [r.id for r in chosen]
    assert result.meta["n_items"] == 4 and result.meta["total_items"] == N_RECORDS
    assert result.meta["limit"] == 4 and result.meta["seed"] == 5
    assert result.metrics["nll"] == pytest.approx(_expected_nll(backend, chosen), rel=1e-5)
    assert [i.id for i in suite.run(backend, limit=4, seed=5).items] == [i.id for i in result.items]
    assert [i.id for i in suite.run(backend, limit=4, seed=6).items] != [i.id for i in result.items]
    assert len(suite.run(backend, limit=100).items) == N_RECORDS
    with pytest.raises(UsageError, match="limit must be ≥ 1"):
        suite.run(backend, limit=0)


class LikelihoodOnly:
    """A backend without ``count_tokens``: the real model's log-likelihoods, nothing else."""

    name = "likelihood-only"

    def __init__(self, inner: HFBackend) -> None:
        self.inner = inner

    def generate(self, conversations: Sequence[Conversation], params: object) -> list[list[str]]:
        raise AssertionError("perplexity never generates")

    def loglikelihood(self, requests: Sequence[tuple[Conversation, str]]) -> list[float]:
        return self.inner.loglikelihood(requests)


def test_without_a_token_counter_the_unit_is_the_utf8_byte(
    backend: HFBackend, held_out: Path, records: list[ChatRecord]
) -> None:
    result = get_suite("perplexity", path=held_out).run(LikelihoodOnly(backend))
    logps = [backend.loglikelihood([_split(r)])[0] for r in records]
    size = sum(len(_split(r)[1].encode()) for r in records)
    assert result.meta["unit"] == "byte" and result.meta["units_scored"] == size
    assert result.metrics["nll"] == pytest.approx(-sum(logps) / size, rel=1e-5)
    assert result.items[0].meta["bytes"] == len(_split(records[0])[1].encode())


def test_a_record_without_an_assistant_turn_is_refused_naming_the_file(
    backend: HFBackend, tmp_path: Path, records: list[ChatRecord]
) -> None:
    path = tmp_path / "no-reply.jsonl"
    lines = [json.dumps(r.to_json()) for r in records[:2]]
    lines.append(json.dumps({"id": "q", "messages": [{"role": "user", "content": "hello"}]}))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UsageError, match=r"no-reply\.jsonl.*no assistant turn"):
        get_suite("perplexity", path=path).run(backend)


def test_missing_and_empty_inputs_are_refused(backend: HFBackend, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no path given"):
        get_suite("perplexity", path=[])
    with pytest.raises(UsageError, match="suite 'perplexity' needs option 'path'"):
        get_suite("perplexity")  # path is required
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(UsageError, match=r"no records in .*empty\.jsonl"):
        get_suite("perplexity", path=tmp_path / "empty.jsonl").run(backend)


def test_the_score_counts_towards_general_only_when_mapped(backend: HFBackend, held_out: Path) -> None:
    result = get_suite("perplexity", path=held_out).run(backend, limit=3)
    score = result.metrics["score"]
    plain = paper_scores([result])
    assert plain["unaggregated"] == ["perplexity"]
    assert plain["general"] is None and plain["components"] == {}
    mapped = paper_scores([result], categories={"perplexity": "general"})
    assert mapped["general"] == pytest.approx(100 * score)
    assert mapped["components"] == {"general": {"perplexity": pytest.approx(score)}}
    assert mapped["unaggregated"] == []
    assert all(mapped[k] is None for k in ("science", "safety", "exaggerated_refusal", "coding"))
