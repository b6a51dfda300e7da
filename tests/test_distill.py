"""Self-distilled chat data: trimming to a full sentence, records equal to the model's own greedy answers,
short answers dropped and reported; ``HFBackend.count_tokens``."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
from tokenizers.processors import TemplateProcessing

from conftest import WORDS
from skillmerge.evaluate.distill import self_distill, trim_to_sentence
from skillmerge.evaluate.generate import HFBackend
from skillmerge.evaluate.suites.base import GenerationParams

MAX_NEW = 16


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> HFBackend:
    """The tiny model, matrices redrawn at std 0.1 (a fresh init only repeats its last input token)."""
    torch.set_num_threads(1)
    backend = HFBackend.from_dir(tiny_model_dir, batch_size=8, device="cpu")
    backend.progress = False
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in backend.model.parameters():
            if parameter.ndim == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return backend


def _prompts(n: int = 40) -> list[tuple[str, str]]:
    rng = random.Random(0)
    ends = ["?", ".", "", " 12 plus 5"]
    return [
        (f"p{i}", " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))) + rng.choice(ends))
        for i in range(n)
    ]


def _greedy(backend: HFBackend, prompts: list[tuple[str, str]]) -> list[tuple[str, int]]:
    """Each prompt's greedy answer text and how many tokens were generated for it (the ground truth)."""
    conversations = [[{"role": "user", "content": p}] for _, p in prompts]
    params = GenerationParams(max_new_tokens=MAX_NEW)
    texts = backend.generate(conversations, params)
    ids = backend.generate_ids([backend.encode_prompt(c) for c in conversations], params)
    return [(t[0], len(i[0])) for t, i in zip(texts, ids, strict=True)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello world. This is cut", "Hello world."),
        ("Really? Yes! And then the", "Really? Yes!"),
        ("No sentence end at all", ""),
        ("", ""),
        ("Version 3.5 is out and", ""),  # a dot inside a number ends nothing
        ("Wow!! More", "Wow!!"),
        ("see (this) and", "see (this)"),
        ("a list [1, 2] then", "a list [1, 2]"),
        ("call `f` now", "call `f`"),
        ("line one\nline two", "line one"),
        ("Done.   ", "Done."),
        ("Ends here.", "Ends here."),
        ("First. Second.\n\nThird", "First. Second."),
    ],
)
def test_trim_to_sentence(text: str, expected: str) -> None:
    assert trim_to_sentence(text) == expected


def test_count_tokens_counts_the_text_alone(backend: HFBackend) -> None:
    tokenizer = backend.tokenizer
    texts = ["", "the cat sees a dog.", "What is 12 plus 99?", "héllo wörld ✓", "<|im_end|> after"]
    for text in texts:
        assert backend.count_tokens(text) == len(tokenizer(text, add_special_tokens=False).input_ids)
    assert backend.count_tokens("the cat sees a dog.") > 1
    # With a tokenizer that adds an end token by default, count_tokens still counts the text only.
    adding = copy.deepcopy(tokenizer)
    eos = adding.eos_token
    adding.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"$A {eos}", special_tokens=[(eos, adding.eos_token_id)]
    )
    with_end = HFBackend(backend.model, adding, backend.template, progress=False)
    assert len(adding("the cat").input_ids) == len(tokenizer("the cat").input_ids) + 1
    for text in texts[1:]:
        assert with_end.count_tokens(text) == len(tokenizer(text, add_special_tokens=False).input_ids)


def test_answers_cut_by_the_limit_are_trimmed_and_short_ones_dropped(backend: HFBackend) -> None:
    candidates = _greedy(backend, _prompts())
    # Only prompts whose answer ran into max_new_tokens (the random model rarely stops on its own).
    prompts = [p for p, (_, n) in zip(_prompts(), candidates, strict=True) if n == MAX_NEW]
    answers = [a.strip() for a, n in candidates if n == MAX_NEW]
    assert len(prompts) >= 30
    report = self_distill(backend, prompts, max_new_tokens=MAX_NEW, source="distilled", min_chars=5)
    cut = [trim_to_sentence(a) for a in answers]
    kept = [i for i, c in enumerate(cut) if len(c) >= 5]
    assert [r.id for r in report.records] == [prompts[i][0] for i in kept]
    for record, i in zip(report.records, kept, strict=True):
        assert [(m.role, m.content) for m in record.messages] == [
            ("user", prompts[i][1]),
            ("assistant", cut[i]),
        ]
        assert record.source == "distilled"
        assert cut[i][-1] in ".!?)]`"  # ends on a full sentence
    assert report.dropped == [prompts[i][0] for i, c in enumerate(cut) if len(c) < 5]
    assert report.trimmed == sum(c != a for a, c in zip(answers, cut, strict=True))
    # The case mix is real: an answer kept after a cut, others cut back to nothing and dropped.
    assert any(cut[i] != answers[i] for i in kept)
    assert 1 <= len(report.records) < len(prompts) and len(report.dropped) >= 10


def test_min_chars_drops_kept_answers_and_reports_them(backend: HFBackend) -> None:
    prompts = _prompts()
    loose = self_distill(backend, prompts, max_new_tokens=MAX_NEW, min_chars=1)
    lengths = {r.id: len(r.messages[1].content) for r in loose.records}
    assert lengths, "no answer survived trimming"
    threshold = max(lengths.values())
    strict = self_distill(backend, prompts, max_new_tokens=MAX_NEW, min_chars=threshold)
    assert [r.id for r in strict.records] == [i for i, n in lengths.items() if n >= threshold]
    assert set(strict.dropped) == set(loose.dropped) | {i for i, n in lengths.items() if n < threshold}
    assert len(strict.records) + len(strict.dropped) == len(prompts)
    assert strict.dropped == [i for i, _ in prompts if i in set(strict.dropped)]  # prompt order
    assert all(r.source == "self-distilled" for r in strict.records)


def test_answers_that_stop_before_the_limit_are_kept_as_generated(backend: HFBackend) -> None:
    candidates = _greedy(backend, _prompts())
    early = [
        (p, a.strip()) for p, (a, n) in zip(_prompts(), candidates, strict=True) if n < MAX_NEW and a.strip()
    ]
    assert early, "no answer ended before the limit: pick other prompts"
    report = self_distill(backend, [p for p, _ in early], max_new_tokens=MAX_NEW, min_chars=1)
    # An answer that ended at end-of-turn was not cut: it is replayed whole, nothing trimmed or dropped.
    assert report.dropped == []
    assert report.trimmed == 0
    assert [r.messages[1].content for r in report.records] == [a for _, a in early]
