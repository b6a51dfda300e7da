"""skillmerge's streaming merge vs ``mergekit-yaml``: wall time, peak RSS, I/O floor and output parity.

Both tools get the SAME mergekit YAML file (skillmerge accepts mergekit's form) and run as child processes
through their command lines (`python -m skillmerge merge CONFIG --out DIR --overwrite`, `mergekit-yaml`),
alternating (ours, mergekit, ours, mergekit, ...), on the same machine. Per child:

    wall       = seconds from spawn to exit (includes Python + torch import, ~2 s for either tool)
    peak RSS   = ru_maxrss of that child (os.wait4), resident pages incl. memory-mapped input pages; each
                 child is spawned by a small launcher (Linux carries a spawner's peak into its child's)
    I/O floor  = seconds for a plain streaming copy of the same bytes: read every input weight file in
                 16 MiB chunks and write as many bytes as the merge output (no compute, no fsync)
    floor frac = floor seconds / our merge seconds   (1.0 = we run at disk/page-cache speed)
    cores      = CPU seconds (user + system, all threads; os.wait4) / wall seconds of a tool's fastest run:
                 how many of the machine's cores it kept busy

Cases: (a) SmolLM2-135M imported from the packaged GGUF (fp32) + 2 perturbed copies as skill models,
3 inputs, task_arithmetic / ties / dare_ties; (b) a synthetic bf16 Llama (~1B parameters by default) in
shards, 3 inputs, task_arithmetic computed in fp32 and written as bf16 by both tools.
Parity is the max |ours − mergekit| over all shared tensors. DARE draws its masks from different RNGs in
the two tools (mergekit: the global torch RNG in its task order; ours: a generator per tensor seeded from
sha256(seed:name)), so dare_ties parity is reported but NOT expected to be small.

mergekit is installed into its own venv (build/bench/mergekit-venv, torch==2.13.0 CPU) so it cannot change
our environment. Inputs are cached under build/bench/. Inputs sit in the page cache after the first pass,
so every run (ours, mergekit, floor) reads from memory, not from disk.

Then the per-method table: every method both tools support (METHODS: linear, task_arithmetic, ties,
dare_linear, dare_ties, breadcrumbs, breadcrumbs_ties, della, della_linear, sce, model_stock, slerp, nuslerp,
multislerp, karcher, nearswap, passthrough), each on the SmolLM2 inputs at fp32, with both tools' wall time
and peak RSS, the ratios ours ÷ mergekit, the I/O-floor fraction and the parity; printed as a table and
written under "methods" (rows in "table", the full records in "cases").

    python benchmarks/merge_vs_mergekit.py                 # ≈ 25-35 min on 2 cores
    python benchmarks/merge_vs_mergekit.py --params 0.3e9  # a smaller synthetic model
    python benchmarks/merge_vs_mergekit.py --methods ties,slerp --repeats 1 --skip-synthetic
    python benchmarks/merge_vs_mergekit.py --quick --repeats 1   # smoke test: small model, seconds per method
Writes benchmarks/results/merge.json (--quick: build/bench/merge-quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from skillmerge.models.shards import ShardedSafetensorsWriter, TensorReader

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "build" / "bench"
VENV = BENCH / "mergekit-venv"
RESULTS = ROOT / "benchmarks" / "results" / "merge.json"
QUICK_RESULTS = BENCH / "merge-quick.json"  # --quick never overwrites the measured results
MERGEKIT_SPEC = ("torch==2.13.0", "mergekit==0.1.5")
_SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def ensure_mergekit() -> Path:
    """``mergekit-yaml`` from a venv of its own (created on first use)."""
    exe = VENV / "bin" / "mergekit-yaml"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *MERGEKIT_SPEC], check=True)
    return exe


def copy_side_files(src: Path, dst: Path) -> None:
    for name in _SIDE_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def perturbed_copy(src: Path, dst: Path, seed: int, scale: float = 0.01, shard: int = 2**30) -> Path:
    """``src`` + N(0, (scale·std(W))²) per tensor, streamed tensor by tensor (a stand-in for a fine-tune)."""
    if dst.exists():
        return dst
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gen = torch.Generator().manual_seed(seed)
    with TensorReader(src) as reader, ShardedSafetensorsWriter(tmp, max_shard_bytes=shard) as writer:
        for name in reader.names():
            w = reader.get(name)
            noise = torch.randn(w.shape, generator=gen) * (scale * float(w.float().std()) + 1e-4)
            writer.add(name, (w.float() + noise).to(w.dtype))
    copy_side_files(src, tmp)
    tmp.rename(dst)
    return dst


def smollm2_inputs() -> list[Path]:
    from skillmerge.models.gguf import import_gguf, smollm2_gguf_path

    base = BENCH / "smollm2" / "base"
    if not base.exists():
        import_gguf(smollm2_gguf_path(), base, dtype=torch.float32)
    return [
        base,
        perturbed_copy(base, BENCH / "smollm2" / "skill1", 1),
        perturbed_copy(base, BENCH / "smollm2" / "skill2", 2),
    ]


def synthetic_llama(params: float, tokenizer_from: Path) -> tuple[list[Path], int]:
    """Three random bf16 Llamas (TinyLlama-like shapes, layer count sized to ``params``) in 1 GiB shards."""
    from transformers import LlamaConfig

    hidden, inter, vocab = 2048, 5632, json.loads((tokenizer_from / "config.json").read_text())["vocab_size"]
    per_layer = 2 * hidden * hidden + 2 * hidden * 256 + 3 * hidden * inter + 2 * hidden
    layers = max(1, round((params - 2 * vocab * hidden) / per_layer))
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=4,
        tie_word_embeddings=False,
        dtype="bfloat16",
    )
    shapes = {
        "model.embed_tokens.weight": (vocab, hidden),
        "lm_head.weight": (vocab, hidden),
        "model.norm.weight": (hidden,),
    }
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": (hidden, hidden),
            p + "self_attn.k_proj.weight": (256, hidden),
            p + "self_attn.v_proj.weight": (256, hidden),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (inter, hidden),
            p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
        }
    config.architectures = ["LlamaForCausalLM"]  # mergekit picks its architecture table from this
    n_params = sum(int(torch.Size(s).numel()) for s in shapes.values())
    dirs = []
    for k in range(3):
        out = BENCH / f"llama-{n_params / 1e9:.2f}B" / f"m{k}"
        dirs.append(out)
        if out.exists():
            config.save_pretrained(out)
            continue
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        gen = torch.Generator().manual_seed(100 + k)
        with ShardedSafetensorsWriter(tmp, max_shard_bytes=2**30) as writer:
            for name, shape in shapes.items():
                t = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=gen) * 0.02
                writer.add(name, t.to(torch.bfloat16))
        config.save_pretrained(tmp)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (tokenizer_from / name).is_file():
                shutil.copyfile(tokenizer_from / name, tmp / name)
        tmp.rename(out)
    return dirs, n_params


# Every method both tools support: (models besides the base, per-model parameters, top-level parameters).
# Inputs are base + skill1 + skill2; a method taking one model gets skill1, one taking no base (linear,
# nuslerp, multislerp, karcher) merges the two skills; slerp and nearswap interpolate base → skill1.
METHODS: dict[str, tuple[int, str, str]] = {
    "linear": (2, "{weight: 0.5}", ""),
    "task_arithmetic": (2, "{weight: 0.5}", ""),
    "ties": (2, "{weight: 0.5, density: 0.5}", ""),
    "dare_linear": (2, "{weight: 0.5, density: 0.5}", ""),
    "dare_ties": (2, "{weight: 0.5, density: 0.5}", ""),
    "breadcrumbs": (2, "{weight: 0.5, density: 0.8, gamma: 0.05}", ""),
    "breadcrumbs_ties": (2, "{weight: 0.5, density: 0.8, gamma: 0.05}", ""),
    "della": (2, "{weight: 0.5, density: 0.5, epsilon: 0.1}", ""),
    "della_linear": (2, "{weight: 0.5, density: 0.5, epsilon: 0.1}", ""),
    "sce": (2, "{weight: 1.0}", "{select_topk: 0.5}"),
    "model_stock": (2, "{weight: 1.0}", ""),
    "slerp": (1, "", "{t: 0.3}"),
    "nuslerp": (2, "{weight: 0.5}", ""),
    "multislerp": (2, "{weight: 0.5}", ""),
    "karcher": (2, "{weight: 1.0}", ""),
    "nearswap": (1, "", "{t: 0.001}"),
    "passthrough": (1, "", ""),
}
NO_BASE = ("linear", "nuslerp", "multislerp", "karcher", "passthrough")
RANDOM = ("dare_linear", "dare_ties", "della", "della_linear")  # masks from different RNGs: parity not exact


def mergekit_yaml(method: str, inputs: list[Path], dtype: str, out_dtype: str | None) -> str:
    """The YAML both tools run for ``method`` (see METHODS) on ``inputs`` = [base, skill1, skill2]."""
    base, *skills = inputs
    count, model_params, top = METHODS[method]
    models = skills[:count]
    lines = [f"merge_method: {method}"]
    if method not in NO_BASE:
        lines.append(f"base_model: {base}")
    lines.append("models:")
    if method in ("slerp", "nearswap"):
        models = [base, *models]
    for model in models:
        lines.append(f"  - model: {model}" + (f"\n    parameters: {model_params}" if model_params else ""))
    if top:
        lines.append(f"parameters: {top}")
    lines += [f"dtype: {dtype}"] + ([f"out_dtype: {out_dtype}"] if out_dtype else [])
    return "\n".join(lines) + "\n"


# Linux keeps a process's RSS high-water mark across fork and exec: a child spawned by this (large,
# model-holding) process would report at least this process's peak. So every measured child is spawned by
# a small launcher process started before anything large is loaded, and reports its own peak only.
_LAUNCHER_SCRIPT = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    cmd = json.loads(line)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    reply = {"wall_s": time.perf_counter() - start, "rc": os.waitstatus_to_exitcode(status),
             "maxrss_kib": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime,
             "tail": output.decode(errors="replace")[-3000:]}
    print(json.dumps(reply), flush=True)
"""
_launcher: subprocess.Popen[str] | None = None


def start_launcher() -> None:
    """Start the small process that spawns every measured child (call before loading any model)."""
    global _launcher
    if _launcher is None:
        _launcher = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )


def timed_child(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd`` through the launcher: wall seconds, and the child's own peak RSS and CPU seconds (user +
    system, all its threads) from os.wait4's rusage."""
    start_launcher()
    assert _launcher is not None and _launcher.stdin is not None and _launcher.stdout is not None
    _launcher.stdin.write(json.dumps(cmd) + "\n")
    _launcher.stdin.flush()
    reply = json.loads(_launcher.stdout.readline())
    if reply["rc"] != 0:
        raise RuntimeError(f"{cmd[0]} failed ({reply['rc']}):\n{reply['tail']}")
    return {"wall_s": reply["wall_s"], "peak_rss_bytes": reply["maxrss_kib"] * 1024, "cpu_s": reply["cpu_s"]}


def io_floor(inputs: list[Path], out_bytes: int, scratch: Path) -> float:
    """Seconds to stream-read every input weight file and write ``out_bytes`` (16 MiB chunks, no compute)."""
    chunk = 16 * 1024**2
    start = time.perf_counter()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    for model in inputs:
        for file in sorted(model.glob("*.safetensors")):
            with file.open("rb", buffering=0) as handle:
                while handle.readinto(view):
                    pass
    with scratch.open("wb", buffering=0) as handle:
        left = out_bytes
        while left > 0:
            left -= handle.write(view[: min(chunk, left)])
    elapsed = time.perf_counter() - start
    scratch.unlink()
    return elapsed


def max_abs_diff(a: Path, b: Path) -> dict[str, Any]:
    with TensorReader(a) as ra, TensorReader(b) as rb:
        shared = sorted(set(ra.names()) & set(rb.names()))
        worst, where, differing, total = 0.0, None, 0, 0
        for name in shared:
            delta = (ra.get(name).float() - rb.get(name).float()).abs()
            differing += int((delta > 1e-5).sum())
            total += delta.numel()
            diff = float(delta.max()) if delta.numel() else 0.0
            if diff > worst:
                worst, where = diff, name
        only_ours = sorted(set(ra.names()) - set(rb.names()))
        only_theirs = sorted(set(rb.names()) - set(ra.names()))
    return {
        "max_abs_diff": worst,
        "worst_tensor": where,
        "tensors_compared": len(shared),
        "entries_over_1e-5": differing,
        "entries": total,
        "only_ours": only_ours,
        "only_mergekit": only_theirs,
    }


def bench_case(
    label: str,
    method: str,
    inputs: list[Path],
    dtype: str,
    out_dtype: str | None,
    reps: int,
    mergekit: Path,
    mergekit_flags: tuple[str, ...] = (),
) -> dict[str, Any]:
    work = BENCH / "runs" / f"{label}-{method}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = work / "merge.yaml"
    cfg.write_text(mergekit_yaml(method, inputs, dtype, out_dtype))
    # Each tool's own command line, as a user runs it: `skillmerge merge` vs `mergekit-yaml`.
    ours_cmd = [
        sys.executable,
        "-m",
        "skillmerge",
        "merge",
        str(cfg),
        "--out",
        str(work / "ours"),
        "--overwrite",
    ]
    theirs_cmd = [str(mergekit), str(cfg), str(work / "mergekit"), *mergekit_flags]
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "mergekit": []}
    load_before = os.getloadavg()[0]  # other work on the machine skews both tools; recorded, not corrected
    for _ in range(reps):  # alternating, so drift (thermal, other load) hits both alike
        shutil.rmtree(work / "mergekit", ignore_errors=True)
        runs["ours"].append(timed_child(ours_cmd))
        runs["ours"][-1]["merge_s"] = json.loads((work / "ours" / "manifest.json").read_text())[
            "wall_seconds"
        ]
        runs["mergekit"].append(timed_child(theirs_cmd))
    manifest = json.loads((work / "ours" / "manifest.json").read_text())
    bytes_read, bytes_written = manifest["bytes_read"], manifest["bytes_written"]
    floor = min(io_floor(inputs, bytes_written, work / "floor.bin") for _ in range(2))
    ours = {k: min(r[k] for r in runs["ours"]) for k in ("wall_s", "peak_rss_bytes")}
    theirs = {k: min(r[k] for r in runs["mergekit"]) for k in ("wall_s", "peak_rss_bytes")}
    for summary, tool in ((ours, "ours"), (theirs, "mergekit")):  # CPU of the fastest run, and its cores busy
        fastest = min(runs[tool], key=lambda r: r["wall_s"])
        summary["cpu_s"] = fastest["cpu_s"]
        summary["cores_busy"] = fastest["cpu_s"] / fastest["wall_s"]
    merge_s = min(r["merge_s"] for r in runs["ours"])  # the merge alone, without interpreter start-up
    result = {
        "case": label,
        "method": method,
        "inputs": [str(p) for p in inputs],
        "dtype": dtype,
        "out_dtype": out_dtype or dtype,
        "reps": reps,
        "load_avg_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "runs": runs,
        "ours": ours | {"merge_s_in_process": merge_s},
        "mergekit": theirs,
        "bytes_read": bytes_read,
        "bytes_written": bytes_written,
        "io_floor_s": floor,
        "time_ratio": ours["wall_s"] / theirs["wall_s"],
        "rss_ratio": ours["peak_rss_bytes"] / theirs["peak_rss_bytes"],
        "floor_fraction": floor / merge_s,
        "floor_fraction_incl_startup": floor / ours["wall_s"],
        "parity": max_abs_diff(work / "ours", work / "mergekit"),
    }
    result["parity"]["comparable"] = method not in RANDOM
    shutil.rmtree(work / "ours", ignore_errors=True)
    shutil.rmtree(work / "mergekit", ignore_errors=True)
    print(
        f"{label:>10} {method:<17} ours {ours['wall_s']:6.1f} s {ours['peak_rss_bytes'] / 2**30:5.2f} GiB | "
        f"mergekit {theirs['wall_s']:6.1f} s {theirs['peak_rss_bytes'] / 2**30:5.2f} GiB | "
        f"time × {result['time_ratio']:.2f}  RSS × {result['rss_ratio']:.2f}  "
        f"floor {result['floor_fraction']:.0%} "
        f"| max|Δ| {result['parity']['max_abs_diff']:.2e}",
        flush=True,
    )
    return result


def quick_inputs() -> list[Path]:
    """Three small random fp32 Llamas (2 layers, 256 wide, ~1.6M parameters): a smoke test in seconds."""
    from transformers import LlamaConfig

    hidden, inter, vocab, layers = 256, 512, 1024, 2
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    config.architectures = ["LlamaForCausalLM"]
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "lm_head.weight": (vocab, hidden)}
    shapes["model.norm.weight"] = (hidden,)
    for i in range(layers):
        p = f"model.layers.{i}."
        kv = hidden // 2
        shapes |= {
            p + "self_attn.q_proj.weight": (hidden, hidden),
            p + "self_attn.k_proj.weight": (kv, hidden),
            p + "self_attn.v_proj.weight": (kv, hidden),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (inter, hidden),
            p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
        }
    gen = torch.Generator().manual_seed(7)
    base = {
        n: torch.ones(s) if len(s) == 1 else torch.randn(s, generator=gen) * 0.02 for n, s in shapes.items()
    }
    dirs = []
    for k in range(3):
        out = BENCH / "quick" / f"m{k}"
        dirs.append(out)
        if out.exists():
            continue
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with ShardedSafetensorsWriter(tmp, max_shard_bytes=2**30) as writer:
            for name, value in base.items():
                writer.add(name, value if k == 0 else value + 0.002 * torch.randn(value.shape, generator=gen))
        config.save_pretrained(tmp)
        tmp.rename(out)
    return dirs


def method_table(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method case: times, peak RSS, ratios (ours ÷ mergekit), I/O-floor fraction, parity."""
    return [
        {
            "method": c["method"],
            "ours_s": round(c["ours"]["wall_s"], 3),
            "mergekit_s": round(c["mergekit"]["wall_s"], 3),
            "ours_rss_gib": round(c["ours"]["peak_rss_bytes"] / 2**30, 3),
            "mergekit_rss_gib": round(c["mergekit"]["peak_rss_bytes"] / 2**30, 3),
            "time_ratio": round(c["time_ratio"], 3),
            "rss_ratio": round(c["rss_ratio"], 3),
            "floor_fraction": round(c["floor_fraction"], 3),
            "ours_cores_busy": round(c["ours"]["cores_busy"], 2),
            "mergekit_cores_busy": round(c["mergekit"]["cores_busy"], 2),
            "max_abs_diff": c["parity"]["max_abs_diff"],
            "parity_comparable": c["parity"]["comparable"],
        }
        for c in cases
    ]


def print_table(rows: list[dict[str, Any]], label: str) -> None:
    print(
        f"\nper method ({label}; ratios are ours ÷ mergekit, floor = I/O floor ÷ our merge time, "
        "cores = CPU seconds ÷ wall seconds of each tool's fastest run)"
    )
    print(
        f"{'method':<17} {'ours s':>7} {'mk s':>7} {'ours GiB':>8} {'mk GiB':>7} "
        f"{'time ×':>7} {'RSS ×':>6} {'floor':>6} {'cores':>5} {'mk cores':>8} {'max|Δ|':>9}"
    )
    for r in rows:
        note = "" if r["parity_comparable"] else " (random)"
        print(
            f"{r['method']:<17} {r['ours_s']:>7.2f} {r['mergekit_s']:>7.2f} {r['ours_rss_gib']:>8.2f} "
            f"{r['mergekit_rss_gib']:>7.2f} {r['time_ratio']:>7.2f} {r['rss_ratio']:>6.2f} "
            f"{r['floor_fraction']:>6.0%} {r['ours_cores_busy']:>5.2f} {r['mergekit_cores_busy']:>8.2f} "
            f"{r['max_abs_diff']:>9.2e}{note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=1.0e9, help="synthetic model size (parameters)")
    parser.add_argument(
        "--repeats", "--reps", dest="reps", type=int, default=2, help="runs per tool per case (alternating)"
    )
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated methods for the per-method table (default: every method both tools support)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: a small synthetic model, the per-method table only, written to {QUICK_RESULTS}",
    )
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(METHODS)})")
    start_launcher()  # before any model is loaded here (see timed_child)
    mergekit = ensure_mergekit()
    cases: list[dict[str, Any]] = []
    n_params = None
    if args.quick:
        label, inputs, flags = "quick", quick_inputs(), ("--no-copy-tokenizer",)
    else:
        smol = smollm2_inputs()
        label, inputs, flags = "smollm2", smol, ()
        for method in ("task_arithmetic", "ties", "dare_ties"):
            cases.append(bench_case("smollm2", method, smol, "float32", None, args.reps, mergekit))
        if not args.skip_synthetic:
            synth, n_params = synthetic_llama(args.params, smol[0])
            cases.append(
                bench_case("synthetic", "task_arithmetic", synth, "float32", "bfloat16", args.reps, mergekit)
            )
    per_method = [
        bench_case(f"{label}-all", m, inputs, "float32", None, args.reps, mergekit, flags) for m in methods
    ]
    rows = method_table(per_method)
    print_table(rows, label)
    version = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('mergekit'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    report = {
        "benchmark": "merge_vs_mergekit",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "torch": torch.__version__,
        "mergekit": version,
        "synthetic_params": n_params,
        "targets": {"time_ratio_max": 0.5, "rss_ratio_max": 0.5, "floor_fraction_min": 0.5},
        "cases": cases,
        "methods": {
            "inputs": label,
            "dtype": "float32",
            "reps": args.reps,
            "table": rows,
            "cases": per_method,
        },
    }
    results = QUICK_RESULTS if args.quick else RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
