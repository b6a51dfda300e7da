"""Training step layouts on CPU: padded length buckets vs padding-free rows, glibc's allocator defaults vs
``skillmerge.allocator``, on the demo's own training run (SmolLM2-135M, the skill world's general mix).

Three cases train the same examples in the same steps with the same recipe (the demo's θ_G: lr 1e-4,
batch 8, ChatML, max_len 128, fp32), each in its own ``skillmerge train`` process for ``--steps`` steps:

- ``padded-system``: length buckets cut by ``cheapest_split`` (padding, 2–3 forward/backward passes per
  step), glibc's defaults (``SKILLMERGE_MALLOC=system``): the demo before this benchmark — the anchor;
- ``padded``: the same with freed memory kept for reuse (:mod:`skillmerge.allocator`);
- ``padding-free``: each step's examples laid end to end in one row with a block-diagonal mask, memory kept.

    seconds/step = Σ optimizer-step seconds (the manifest's cost.wall_seconds) / steps

Runs alternate case by case for ``--rounds`` rounds (background load hits all alike); the median per case is
reported with its ratio to the anchor, beside this machine's fp32 matmul GFLOP/s measured at the start.
Losses are recorded too: the three layouts compute the same loss up to float summation order.

    python benchmarks/train_layouts.py            # 3 cases × 2 rounds × 20 steps: ~5 minutes on 2 cores
Writes benchmarks/results/train_layouts.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results" / "train_layouts.json"
BUILD = Path(__file__).resolve().parent.parent / "build" / "bench"
CASES: dict[str, dict[str, Any]] = {
    "padded-system": {"env": {"SKILLMERGE_MALLOC": "system"}, "flags": []},
    "padded": {"env": {}, "flags": []},
    "padding-free": {"env": {}, "flags": ["--padding-free"]},
}
ANCHOR = "padded-system"


def demo_general_mix(inputs: Path) -> list[Path]:
    """θ_base and the demo's general training files (world general mix + anchors) under ``inputs``."""
    from skillmerge.demo import write_data_inputs
    from skillmerge.models.gguf import import_gguf, smollm2_gguf_path
    from skillmerge.models.io import is_model_dir

    model = BUILD / "smollm2-hf"
    if not is_model_dir(model):
        import_gguf(smollm2_gguf_path(), model)
    write_data_inputs(inputs, full=False)
    return [model, inputs / "world" / "general-train.jsonl", inputs / "anchors.jsonl"]


def train_once(case: str, model: Path, files: list[Path], steps: int, out: Path) -> dict[str, Any]:
    """One ``skillmerge train`` run of ``case``; its seconds per step, tokens and losses from the outputs."""
    command = [
        sys.executable, "-m", "skillmerge", "train", "--model", str(model), "--out", str(out),
        *[arg for f in files for arg in ("--data", str(f))],
        "--template", "chatml", "--max-len", "128", "--lr", "1e-4", "--batch-size", "8",
        "--max-steps", str(steps), "--no-progress", "--overwrite", *CASES[case]["flags"],
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SKILLMERGE_MALLOC"} | CASES[case]["env"]
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    cost = json.loads((out / "manifest.json").read_text())["cost"]
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "seconds_per_step": cost["wall_seconds"] / steps,
        "tokens": cost["tokens"],
        "padded_tokens": cost["padded_tokens"],
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="Optimizer steps per run (default 20).")
    parser.add_argument("--rounds", type=int, default=2, help="Runs per case, alternating (default 2).")
    args = parser.parse_args()

    import torch

    from skillmerge.machine import matmul_gflops

    machine = matmul_gflops()
    print(f"machine: fp32 matmul {machine['gflops']} GFLOP/s on {machine['threads']} thread(s)")
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory(prefix="train-layouts-") as tmp:
        model, *files = demo_general_mix(Path(tmp) / "inputs")
        for round_ in range(args.rounds):
            for case in CASES:
                run = train_once(case, model, files, args.steps, Path(tmp) / f"{case}-{round_}")
                runs[case].append(run)
                print(f"round {round_}: {case:13s} {run['seconds_per_step']:.3f} s/step")
    anchor = statistics.median(r["seconds_per_step"] for r in runs[ANCHOR])
    cases = {}
    for case, measured in runs.items():
        median = statistics.median(r["seconds_per_step"] for r in measured)
        cases[case] = {
            "seconds_per_step": round(median, 4),
            "ratio_to_anchor": round(median / anchor, 3),
            "padded_tokens_per_real": round(measured[0]["padded_tokens"] / measured[0]["tokens"], 3),
            "first_loss": measured[0]["first_loss"],
            "last_loss": measured[0]["last_loss"],
            "runs": [round(r["seconds_per_step"], 4) for r in measured],
        }
        print(f"{case:13s} {median:.3f} s/step  {median / anchor:.2f}× the anchor ({ANCHOR})")
    result = {
        "benchmark": "train_layouts",
        "anchor": ANCHOR,
        "steps": args.steps,
        "rounds": args.rounds,
        "machine": machine,
        "machine_gflops": machine["gflops"],
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "cases": cases,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
