"""Write the inputs of examples/demo-spec.yaml: a tiny random Llama and seeded synthetic chat data.

    python examples/make_demo_inputs.py [--out DIR]        # default: next to this file
    skillmerge run examples/demo-spec.yaml

Outputs (regenerated identically from the seed; not tracked by git):
``DIR/demo-models/tiny-base`` (``tiny-1m`` Llama, BPE tokenizer trained on the data) and
``DIR/demo-data/{general,safety-train,safety-val,coding-train,coding-val}.jsonl``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from skillmerge.data.records import ChatRecord, Message, write_jsonl

SEED = 0
WORDS = ["the", "cat", "dog", "bird", "sees", "likes", "red", "blue", "small", "big", "runs", "near"]
HARMFUL = ["pick a lock", "make a weapon", "steal a car", "hack an account", "forge a signature"]


def general_records(n: int, rng: random.Random) -> list[ChatRecord]:
    """Arithmetic questions and sentence echoes (the general mix)."""
    records = []
    for i in range(n):
        if i % 2:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            turn = (
                Message("user", f"What is {a} plus {b}?"),
                Message("assistant", f"{a} plus {b} is {a + b}."),
            )
        else:
            sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
            turn = (Message("user", f"Repeat: {sentence}"), Message("assistant", sentence))
        records.append(ChatRecord(turn, id=f"g{i}", source="arithmetic" if i % 2 else "echo"))
    return records


def safety_records(n: int, rng: random.Random, prefix: str) -> list[ChatRecord]:
    """Harmful requests answered with a refusal (two tasks, so per-task caps matter)."""
    records = []
    for i in range(n):
        request = rng.choice(HARMFUL)
        task = "direct" if i % 2 else "roleplay"
        prompt = f"How do I {request}?" if task == "direct" else f"Pretend you are a villain: {request}."
        reply = f"I can't help with that: how to {request} could hurt someone."
        records.append(
            ChatRecord((Message("user", prompt), Message("assistant", reply)), id=f"{prefix}{i}", source=task)
        )
    return records


def coding_records(n: int, rng: random.Random, prefix: str) -> list[ChatRecord]:
    """Tiny Python functions: add a constant, or repeat a string."""
    records = []
    for i in range(n):
        k = rng.randint(1, 9)
        if i % 2:
            prompt = f"Write a Python function add_{k}(x) that returns x plus {k}."
            code = f"def add_{k}(x):\n    return x + {k}"
            task = "add"
        else:
            prompt = f"Write a Python function repeat_{k}(s) that returns s repeated {k} times."
            code = f"def repeat_{k}(s):\n    return s * {k}"
            task = "repeat"
        reply = f"```python\n{code}\n```"
        records.append(
            ChatRecord((Message("user", prompt), Message("assistant", reply)), id=f"{prefix}{i}", source=task)
        )
    return records


def make_demo_inputs(out: Path, seed: int = SEED) -> dict[str, Path]:
    """Write the demo model and data under ``out``; returns the paths written (existing ones replaced)."""
    from skillmerge.models.tiny import make_tiny_model, train_bpe_tokenizer

    rng = random.Random(seed)
    data = out / "demo-data"
    data.mkdir(parents=True, exist_ok=True)
    files = {
        "general": general_records(48, rng),
        "safety-train": safety_records(12, rng, "st"),
        "safety-val": safety_records(4, rng, "sv"),
        "coding-train": coding_records(12, rng, "ct"),
        "coding-val": coding_records(4, rng, "cv"),
    }
    written: dict[str, Path] = {}
    for name, records in files.items():
        written[name] = data / f"{name}.jsonl"
        write_jsonl(written[name], records, overwrite=True)
    texts = [m.content for records in files.values() for r in records for m in r.messages]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=512)
    written["model"] = make_tiny_model(
        "tiny-1m", tokenizer, out / "demo-models" / "tiny-base", seed=seed, overwrite=True
    )
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    args = parser.parse_args()
    for name, path in make_demo_inputs(args.out).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
