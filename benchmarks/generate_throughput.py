"""Generation throughput: our batched engine (:class:`skillmerge.evaluate.generate.HFBackend`) vs a
per-prompt ``model.generate`` loop, same prompts, same model, same greedy decoding, on CPU.

    tokens/s = Σ generated tokens / wall seconds (prompt processing included, model loading excluded)

Prompts are the general suite's math and instruction prompts rendered with the model's chat template
(varied lengths, as in evaluation). Both sides stop at the same end-of-turn ids and ``max_new_tokens``; the
script also reports how many completions are token-identical between the two (greedy decoding should agree
up to float ties between left-padded and unpadded attention).

Model: SmolLM2-135M-Instruct if it has been imported under ``build/bench/smollm2/base`` (``skillmerge
import-gguf``), else a randomly initialised ``tiny-20m`` Llama with a BPE tokenizer trained on the prompts.

    python benchmarks/generate_throughput.py [--model DIR] [--prompts 32] [--max-new-tokens 96] [--threads 1]
Writes benchmarks/results/generate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from skillmerge.evaluate.generate import HFBackend
from skillmerge.evaluate.suites.base import GenerationParams
from skillmerge.evaluate.suites.general import GSM_PROMPT, generate_instruction_items, generate_math_items
from skillmerge.models.io import is_model_dir
from skillmerge.models.tiny import make_tiny_model, train_bpe_tokenizer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "generate.json"
SMOLLM2 = ROOT / "build" / "bench" / "smollm2" / "base"


def benchmark_prompts(n: int) -> list[list[dict[str, str]]]:
    """Alternating math and instruction-following prompts (deterministic)."""
    math_items = generate_math_items(n)
    instruction_items = generate_instruction_items(n)
    prompts = []
    for i in range(n):
        text = GSM_PROMPT.format(question=math_items[i].question) if i % 2 else instruction_items[i].prompt
        prompts.append([{"role": "user", "content": text}])
    return prompts


def tiny_model_dir(prompts: list[list[dict[str, str]]], where: Path) -> Path:
    tokenizer = train_bpe_tokenizer([p[0]["content"] for p in prompts] * 4, vocab_size=2048)
    return make_tiny_model("tiny-20m", tokenizer, where / "tiny-20m", seed=0)


def per_prompt_loop(backend: HFBackend, prompt_ids: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """The baseline: one ``model.generate`` call per prompt (no padding, KV cache on, greedy)."""
    stop = sorted(backend.stop_ids)
    outputs = []
    for ids in prompt_ids:
        input_ids = torch.tensor([ids], device=backend.device)
        out = backend.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop,
            pad_token_id=backend.pad_id,
        )
        generated = out[0, len(ids) :].tolist()
        while generated and generated[-1] in backend.stop_ids:  # the engine excludes the end token
            generated.pop()
        outputs.append(generated)
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: see docstring)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: comparable on a busy machine)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    prompts = benchmark_prompts(args.prompts)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model or (
            SMOLLM2 if is_model_dir(SMOLLM2) else tiny_model_dir(prompts, Path(scratch))
        )
        backend = HFBackend.from_dir(model_dir, batch_size=args.batch_size, device="cpu")
        params = GenerationParams(max_new_tokens=args.max_new_tokens)
        prompt_ids = [backend.encode_prompt(p) for p in prompts]

        backend.generate_ids(prompt_ids[:2], GenerationParams(max_new_tokens=2))  # warm up kernels
        start = time.perf_counter()
        ours = [row[0] for row in backend.generate_ids(prompt_ids, params)]
        ours_seconds = time.perf_counter() - start

        start = time.perf_counter()
        baseline = per_prompt_loop(backend, prompt_ids, args.max_new_tokens)
        baseline_seconds = time.perf_counter() - start

    ours_tokens, baseline_tokens = sum(map(len, ours)), sum(map(len, baseline))
    ours_rate, baseline_rate = ours_tokens / ours_seconds, baseline_tokens / baseline_seconds
    result = {
        "model": str(model_dir if args.model or model_dir == SMOLLM2 else "tiny-20m (random weights)"),
        "parameters": sum(p.numel() for p in backend.model.parameters()),
        "prompts": len(prompts),
        "prompt_tokens": {"min": min(map(len, prompt_ids)), "max": max(map(len, prompt_ids))},
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "ours": {
            "tokens": ours_tokens,
            "seconds": round(ours_seconds, 3),
            "tokens_per_s": round(ours_rate, 2),
        },
        "per_prompt_generate": {
            "tokens": baseline_tokens,
            "seconds": round(baseline_seconds, 3),
            "tokens_per_s": round(baseline_rate, 2),
        },
        "speedup": round(ours_rate / baseline_rate, 2),
        "identical_completions": sum(a == b for a, b in zip(ours, baseline, strict=True)),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"{result['model']}: ours {ours_rate:.1f} tok/s vs per-prompt generate {baseline_rate:.1f} tok/s "
        f"→ {result['speedup']:.2f}×; identical completions {result['identical_completions']}/{len(prompts)}"
    )


if __name__ == "__main__":
    main()
