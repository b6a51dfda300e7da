"""Packing vs length bucketing: training throughput of a tiny Llama on CPU.

Same examples, same padded-token budget per optimizer step (``rows × seq_len`` = ``max_tokens``), same model
and seed. Throughput counts real tokens only (padding is wasted work, not throughput):

    tokens/s = Σ non-padding tokens / wall seconds of (forward + backward + AdamW step) over one epoch

Lengths follow a log-normal like chat SFT data (Tulu-style: median ≈ 250 tokens, long right tail), clipped
to [16, seq_len]. Token ids are random: throughput does not depend on them.

    python benchmarks/packing_vs_bucketing.py            # ≈ 4 minutes on one core
Writes benchmarks/results/packing.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from skillmerge.data.packing import (
    bucket_batches,
    collate_packed,
    collate_padded,
    pack_examples,
    packed_batches,
)
from skillmerge.data.tokenize import IGNORE_INDEX, TokenizedExample
from skillmerge.models.tiny import build_tiny_model, count_parameters, train_bpe_tokenizer

RESULTS = Path(__file__).resolve().parent / "results" / "packing.json"


def synthetic_examples(n: int, seq_len: int, vocab: int, seed: int) -> list[TokenizedExample]:
    """Chat-like examples: log-normal lengths, the first ~40% a prompt (ignored), the rest the answer."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        length = min(seq_len, max(16, round(rng.lognormvariate(math.log(250), 0.8))))
        ids = tuple(rng.randrange(10, vocab) for _ in range(length))
        prompt = max(1, int(0.4 * length))
        examples.append(TokenizedExample(ids, (IGNORE_INDEX,) * prompt + ids[prompt:]))
    return examples


Batch = dict[str, torch.Tensor | None]


def run_epoch(model: torch.nn.Module, batches: list[Batch], optimizer: torch.optim.Optimizer) -> float:
    start = time.perf_counter()
    for batch in batches:
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure(
    name: str,
    make_batches: Callable[[], list[tuple[Batch, int]]],
    model_factory: Callable[[], torch.nn.Module],
    repeats: int,
) -> dict[str, float | int | str]:
    made = make_batches()
    batches = [batch for batch, _ in made]
    real = sum(n for _, n in made)
    shapes = [tuple(batch["input_ids"].shape) for batch in batches]  # type: ignore[union-attr]
    padded = sum(rows * length for rows, length in shapes)
    # query-key pairs the (dense) attention computes, masked or not: the packing overhead
    attention_pairs = sum(rows * length * length for rows, length in shapes)
    times = []
    for _ in range(repeats):
        model = model_factory()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        run_epoch(model, batches[:2], optimizer)  # warm-up: allocator and kernels
        times.append(run_epoch(model, batches, optimizer))
    best = min(times)
    result = {
        "method": name,
        "steps": len(batches),
        "real_tokens": real,
        "padded_tokens": padded,
        "padding_fraction": round(1 - real / padded, 4),
        "attention_pairs": attention_pairs,
        "seconds": round(best, 3),
        "seconds_all": [round(t, 3) for t in times],
        "tokens_per_s": round(real / best, 1),
    }
    print(
        f"{name:>24}: {result['tokens_per_s']:>9,.0f} tok/s  steps {len(batches):>4}  "
        f"padding {100 * result['padding_fraction']:.1f}%  ({best:.1f}s)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny-5m")
    parser.add_argument("--examples", type=int, default=120)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=4, help="packed rows per step")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    tokenizer = train_bpe_tokenizer([f"sample text {i} for the tokenizer" for i in range(200)], 512)
    examples = synthetic_examples(args.examples, args.seq_len, len(tokenizer), args.seed)
    max_tokens = args.rows * args.seq_len
    pad_id = int(tokenizer.pad_token_id)

    def model_factory() -> torch.nn.Module:
        return build_tiny_model(args.preset, tokenizer, seed=args.seed).train()

    def packed(mask: Literal["4d", "position_ids"]) -> Callable[[], list[tuple[Batch, int]]]:
        def make() -> list[tuple[Batch, int]]:
            rows = pack_examples(examples, args.seq_len)
            out = []
            for indices in packed_batches(rows, args.rows, seed=args.seed):
                chunk = [rows[i] for i in indices]
                batch = collate_packed(chunk, pad_id=pad_id, pad_to=args.seq_len, mask=mask)
                out.append((batch, sum(len(row) for row in chunk)))
            return out

        return make

    def bucketed() -> list[tuple[Batch, int]]:
        out = []
        for indices in bucket_batches(examples, max_tokens=max_tokens, seed=args.seed):
            chunk = [examples[i] for i in indices]
            out.append((collate_padded(chunk, pad_id=pad_id), sum(len(e) for e in chunk)))
        return out

    model = model_factory()
    n_params = count_parameters(model)
    lengths = sorted(len(e) for e in examples)
    print(
        f"{args.preset} ({n_params / 1e6:.2f}M params), {len(examples)} examples, "
        f"{sum(lengths):,} tokens (median {lengths[len(lengths) // 2]}, max {lengths[-1]}), "
        f"budget {max_tokens} tokens/step, {args.threads} threads"
    )
    results = [
        measure("packing (4D mask)", packed("4d"), model_factory, args.repeats),
        measure("packing (position_ids)", packed("position_ids"), model_factory, args.repeats),
        measure("bucketing (padding)", bucketed, model_factory, args.repeats),
    ]
    ratio = results[0]["tokens_per_s"] / results[2]["tokens_per_s"]  # type: ignore[operator]
    ratio_pos = results[1]["tokens_per_s"] / results[2]["tokens_per_s"]  # type: ignore[operator]
    print(f"packing (4D) / bucketing = {ratio:.2f}x; packing (position_ids) / bucketing = {ratio_pos:.2f}x")
    payload = {
        "benchmark": "packing_vs_bucketing",
        "model": {"preset": args.preset, "parameters": n_params, "attn_implementation": "sdpa"},
        "data": {
            "examples": len(examples),
            "tokens": sum(lengths),
            "median_length": lengths[len(lengths) // 2],
            "max_length": lengths[-1],
            "seq_len": args.seq_len,
            "tokens_per_step": max_tokens,
        },
        "machine": {
            "torch": torch.__version__,
            "threads": args.threads,
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "results": results,
        "ratio_packing_4d_over_bucketing": round(ratio, 3),
        "ratio_packing_position_ids_over_bucketing": round(ratio_pos, 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
