"""The GPU check: what skillmerge does on one GPU, measured in one run with nothing fetched.

Models are randomly initialised from the published shapes (no weights travel): SmolLM2-135M (30 layers,
576 wide, 49,152 tokens) and a ~1.2B Llama (Llama-3.2-1B's shape: 16 layers, 2048 wide, 128,256 tokens),
with a byte-level BPE tokenizer trained here on the synthetic chats (ids stay below the model's vocabulary).
Sections, each recorded even when another fails (``error`` holds the first line of what went wrong):

1. ``device``: name, memory, torch/CUDA versions, measured bf16 matmul TFLOP/s and the card's bf16 dense
   peak (:data:`BF16_PEAK_TFLOPS`, by device name);
2. ``sft_bf16``: our SFT recipe (``skillmerge.train.run``, ``precision: bf16``) on the SmolLM2 shape:
   tokens/s, loss tokens/s and MFU = 6·N·tokens/s ÷ the card's peak;
3. ``fsdp_one_process``: ``accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 1
   -m skillmerge train`` on the same model: exit code, steps, seconds (the FSDP2 path runs);
4. ``merge_1b``: task arithmetic θ_G + 0.5·(θ_D − θ_base) of three ~1.2B models, on the GPU and on the
   CPU: seconds each, peak RSS, and whether the tensors agree (max |difference|);
5. ``generation``: batched greedy generation with our HF backend on the SmolLM2 shape: tokens/s.

    bash benchmarks/gpu_check.sh            # on the GPU machine; writes $OUT/gpu_check.json (or results/)
    python benchmarks/gpu_check.py --smoke  # every section at toy sizes on the CPU: the script works
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parents[1]
# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, no sparsity), matched by name.
BF16_PEAK_TFLOPS: dict[str, float] = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "L4": 121.0,
}
SHAPES: dict[str, dict[str, Any]] = {
    "smollm2-135m": {
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "max_position_embeddings": 8192,
        "rope_theta": 100000.0,
        "tie_word_embeddings": True,
    },
    "llama-1b": {
        "vocab_size": 128256,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 8192,
        "rope_theta": 500000.0,
        "tie_word_embeddings": True,
    },
    "smoke": {
        "vocab_size": 2048,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
    },
}


def card_peak(name: str) -> float | None:
    for key, peak in BF16_PEAK_TFLOPS.items():
        if key.lower() in name.lower():
            return peak
    return None


def chats(n: int, seed: int = 0) -> list[dict[str, Any]]:
    import random

    rng = random.Random(seed)
    words = [
        "model",
        "merge",
        "skill",
        "task",
        "vector",
        "weight",
        "general",
        "science",
        "safety",
        "answer",
        "question",
        "data",
        "train",
    ]
    records = []
    for i in range(n):
        question = " ".join(rng.choice(words) for _ in range(rng.randint(8, 40)))
        answer = " ".join(rng.choice(words) for _ in range(rng.randint(40, 200)))
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        records.append({"id": f"c{i}", "messages": messages})
    return records


def make_model(shape: str, where: Path, seed: int, dtype: torch.dtype = torch.bfloat16) -> Path:
    """A randomly initialised model of ``shape`` with a BPE tokenizer, saved through our writer."""
    from skillmerge.models.io import save_model
    from skillmerge.models.tiny import train_bpe_tokenizer

    texts = [m["content"] for r in chats(64) for m in r["messages"]]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=min(1024, SHAPES[shape]["vocab_size"]))
    config = LlamaConfig(
        **SHAPES[shape],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(dtype)
    return save_model(model.cpu(), tokenizer, where)


def section(results: dict[str, Any], name: str, out: Path, work: Callable[[], dict[str, Any]]) -> None:
    """Run one section; its result or its error goes into ``results`` and the JSON is rewritten at once."""
    start = time.perf_counter()
    print(f"== {name}", flush=True)
    try:
        results[name] = work()
    except Exception as err:
        results[name] = {
            "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"
        }
        traceback.print_exc()
    results[name]["section_seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(results[name], indent=2), flush=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def device_info(smoke: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.is_available(),
    }
    if not torch.cuda.is_available():
        info["note"] = "no CUDA device: CPU numbers (smoke)" if smoke else "no CUDA device"
        return info
    props = torch.cuda.get_device_properties(0)
    info.update(
        name=props.name,
        memory_gib=round(props.total_memory / 2**30, 1),
        bf16_peak_tflops=card_peak(props.name),
    )
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    info["bf16_matmul_tflops"] = round(2 * n**3 * reps / (time.perf_counter() - start) / 1e12, 1)
    return info


def train_fields(model: Path, data: Path, out: Path, smoke: bool) -> dict[str, Any]:
    return {
        "model": str(model),
        "out": str(out),
        "data": {"files": [str(data)], "template": "chatml", "max_len": 256 if smoke else 1024},
        "max_steps": 3 if smoke else 40,
        "batch_size": 2 if smoke else 16,
        "grad_accum": 1,
        "lr": 1e-4,
        "precision": "bf16" if torch.cuda.is_available() else "fp32",
        "progress": False,
        "log_steps": 10,
    }


def sft(model: Path, data: Path, work: Path, smoke: bool, peak: float | None) -> dict[str, Any]:
    from skillmerge.train import build_train_config, run

    result = run(build_train_config(train_fields(model, data, work / "sft", smoke)))
    cost = result.cost
    tokens_per_s = cost.tokens / cost.wall_seconds
    record = {
        "steps": result.steps,
        "final_loss": result.final_loss,
        "tokens": cost.tokens,
        "padded_tokens": cost.padded_tokens,
        "wall_seconds": round(cost.wall_seconds, 2),
        "tokens_per_s": round(tokens_per_s, 1),
        "loss_tokens_per_s": round(cost.loss_tokens / cost.wall_seconds, 1),
        "params": cost.total_params,
        "achieved_tflops": round(cost.flops / cost.wall_seconds / 1e12, 2),
        "peak_gpu_gib": round(cost.peak_gpu_bytes / 2**30, 2) if cost.peak_gpu_bytes else None,
    }
    if peak:
        record["mfu"] = round(cost.flops / cost.wall_seconds / 1e12 / peak, 4)
    return record


def fsdp_one_process(model: Path, data: Path, work: Path, smoke: bool) -> dict[str, Any]:
    import yaml

    fields = train_fields(model, data, work / "fsdp", smoke)
    fields["max_steps"] = 3 if smoke else 10
    config = work / "fsdp-train.yaml"
    config.write_text(yaml.safe_dump(fields), encoding="utf-8")
    accelerate_config = (
        ROOT / "configs" / "accelerate" / ("fsdp.yaml" if torch.cuda.is_available() else "single.yaml")
    )
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config)]
    command += ["--num_processes", "1", "-m", "skillmerge", "train", str(config)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    record: dict[str, Any] = {"accelerate_config": accelerate_config.name, "returncode": done.returncode}
    record["seconds"] = round(time.perf_counter() - start, 2)
    manifest = work / "fsdp" / "manifest.json"
    if done.returncode == 0 and manifest.is_file():
        trained = json.loads(manifest.read_text())
        record.update(steps=trained["cost"]["optimizer_steps"], final_loss=trained["final_loss"])
    else:
        tail = (done.stdout + done.stderr).strip().splitlines()[-8:]
        raise RuntimeError(f"accelerate launch exited {done.returncode}: {' | '.join(tail)}")
    return record


def merge(work: Path, smoke: bool) -> dict[str, Any]:
    from skillmerge.merge import run as merge_run
    from skillmerge.merge.config import config_from_dict
    from skillmerge.models.fingerprint import checkpoint_fingerprint

    shape = "smoke" if smoke else "llama-1b"
    paths = {
        role: make_model(shape, work / role, seed) for seed, role in enumerate(("base", "general", "skill"))
    }
    record: dict[str, Any] = {"shape": shape}
    outputs = {}
    for device in ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]:
        recipe = {
            "method": "task_arithmetic",
            "base_model": str(paths["base"]),
            "models": [
                {"model": str(paths["general"]), "weight": 1.0},
                {"model": str(paths["skill"]), "weight": 0.5},
            ],
            "dtype": "bfloat16",
            "device": device,
        }
        result = merge_run(config_from_dict(recipe, "gpu-check"), work / f"merged-{device}", progress=False)
        outputs[device] = work / f"merged-{device}"
        record[device] = {
            "seconds": round(result.wall_seconds, 2),
            "peak_rss_gib": round(result.peak_rss_bytes / 2**30, 2),
        }
    if len(outputs) == 2:
        record["same_fingerprint"] = checkpoint_fingerprint(outputs["cuda"]) == checkpoint_fingerprint(
            outputs["cpu"]
        )
        record["max_abs_difference"] = max_difference(outputs["cuda"], outputs["cpu"])
        record["gpu_speedup"] = round(record["cpu"]["seconds"] / record["cuda"]["seconds"], 2)
    return record


def max_difference(a: Path, b: Path) -> float:
    from safetensors import safe_open

    worst = 0.0
    for file in sorted(a.glob("*.safetensors")):
        with safe_open(file, "pt") as left, safe_open(b / file.name, "pt") as right:
            for name in left.keys():  # noqa: SIM118 (safe_open has keys(), not iteration)
                diff = (left.get_tensor(name).float() - right.get_tensor(name).float()).abs().max()
                worst = max(worst, float(diff))
    return worst


def generation(model: Path, smoke: bool) -> dict[str, Any]:
    from skillmerge.evaluate.generate import HFBackend
    from skillmerge.evaluate.suites.base import GenerationParams

    backend = HFBackend.from_dir(model, template="chatml", batch_size=8 if smoke else 64)
    prompts = [
        [{"role": "user", "content": r["messages"][0]["content"]}] for r in chats(8 if smoke else 256, seed=1)
    ]
    params = GenerationParams(max_new_tokens=16 if smoke else 128)
    backend.generate(prompts[:2], GenerationParams(max_new_tokens=4))  # warm-up (kernels, allocator)
    start = time.perf_counter()
    outputs = backend.generate(prompts, params)
    seconds = time.perf_counter() - start
    tokens = sum(backend.count_tokens(o[0]) for o in outputs)
    return {
        "prompts": len(prompts),
        "max_new_tokens": params.max_new_tokens,
        "batch_size": backend.batch_size,
        "generated_tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "device": str(backend.device),
        "dtype": str(next(backend.model.parameters()).dtype),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="Toy sizes on whatever device there is.")
    parser.add_argument("--out", type=Path, default=None, help="JSON result (default: $OUT or results/).")
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here, nothing measured (--smoke runs every section small)")
        return
    default = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks" / "results"
    out = args.out or default / ("gpu_check_smoke.json" if args.smoke else "gpu_check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"smoke": args.smoke, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        section(results, "device", out, lambda: device_info(args.smoke))
        peak = results["device"].get("bf16_peak_tflops")
        small = make_model("smoke" if args.smoke else "smollm2-135m", work / "smollm2", seed=0)
        data = work / "chats.jsonl"
        data.write_text(
            "".join(json.dumps(r) + "\n" for r in chats(64 if args.smoke else 2048)), encoding="utf-8"
        )
        section(results, "sft_bf16", out, lambda: sft(small, data, work, args.smoke, peak))
        section(results, "fsdp_one_process", out, lambda: fsdp_one_process(small, data, work, args.smoke))
        section(results, "generation", out, lambda: generation(small, args.smoke))
        section(results, "merge_1b", out, lambda: merge(work, args.smoke))
    failed = [name for name, value in results.items() if isinstance(value, dict) and "error" in value]
    print(f"wrote {out}; sections failed: {', '.join(failed) or 'none'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
