"""skillmerge's SFT recipe vs TRL's ``SFTTrainer`` on CPU: loss tokens per second and final training loss.

Both sides get the same model directory, the same tokenized examples (our ``tokenize_records``: ChatML,
assistant-only targets; TRL gets them pre-tokenized as ``input_ids`` + ``completion_mask`` with
``completion_only_loss=True``), the same effective batch (per-device batch × accumulation), max length,
learning rate, linear schedule with 3% warmup, weight decay 0, grad clipping 1.0, seed, fp32, one thread.
Each side uses its own default batching. Both draw random effective batches; TRL pads each random
micro-batch of ``batch_size`` examples, we sort each step's examples by length and cut them into
micro-batches that minimise padded tokens (``skillmerge.train.data``); the gradient of a step is the same
either way, since both normalise the loss by the target tokens of the whole effective batch.

    loss tokens/s = Σ target tokens trained on / seconds of the training loop

Our seconds are the summed optimizer-step times from the manifest; TRL's are ``train_runtime`` of
``trainer.train()``. Final training loss is measured the same way for both after training: the mean
target-token loss of the saved model (or base + adapter) over every training example, which does not
depend on the order batches came in (the mean of the last 5 logged step losses is recorded too).
Runs alternate (ours, TRL, ours, TRL, ...) so background load hits both alike; the
median over rounds is reported, with ratios ours/TRL.

TRL is installed into its own virtual environment (``build/bench/trl-venv``) that sees our site-packages
through a ``.pth`` file, with torch/transformers/accelerate pinned by a constraints file, so installing it
cannot change our torch.

    python benchmarks/sft_vs_trl.py                  # tiny-20m full FT, then SmolLM2-135M LoRA (~15 min)
    python benchmarks/sft_vs_trl.py --skip-smollm2   # tiny-20m only
Writes benchmarks/results/sft.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "bench"
TRL_VENV = BUILD / "trl-venv"
RESULTS = REPO / "benchmarks" / "results" / "sft.json"
PINS = ("torch", "transformers", "accelerate")
WORDS = [
    *("the", "cat", "dog", "bird", "sees", "likes", "red", "blue", "small", "big", "runs", "near", "a"),
    *("river", "stone", "tree", "house", "light", "dark", "old", "new", "quick", "slow", "bright"),
    *("quiet", "under", "over", "across", "between", "before", "after"),
]


# ---------------------------------------------------------------- TRL worker (runs inside the TRL venv)


def trl_worker(spec_path: str) -> None:
    """Train with TRL's SFTTrainer as ``spec`` says; write ``{runtime, losses, loss_tokens}`` JSON."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(1)
    rows = [json.loads(line) for line in Path(spec["tokenized"]).read_text().splitlines()]
    dataset = Dataset.from_list(rows)
    tokenizer = AutoTokenizer.from_pretrained(spec["model"], local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32, local_files_only=True)
    peft_config = None
    if spec.get("lora"):
        from peft import LoraConfig

        lora = spec["lora"]
        peft_config = LoraConfig(
            task_type="CAUSAL_LM",
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"],
        )
    args = SFTConfig(
        output_dir=spec["out"],
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=spec["grad_accum"],
        num_train_epochs=spec["epochs"],
        max_steps=spec.get("max_steps") or -1,
        learning_rate=spec["lr"],
        lr_scheduler_type="linear",
        warmup_steps=spec["warmup_ratio"],  # < 1: a ratio of the total steps
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_length=spec["max_len"],
        completion_only_loss=True,
        packing=False,
        seed=spec["seed"],
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )
    setup = _setup_here()  # after the trainer is built: what the training loop runs with
    output = trainer.train()
    trainer.save_model(spec["out"])  # the model (or adapter), scored on the whole training set afterwards
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result = {
        "train_runtime": output.metrics["train_runtime"],
        "losses": losses,
        "steps": trainer.state.global_step,
        "setup": setup,
    }
    Path(spec["result"]).write_text(json.dumps(result))


def _setup_here() -> dict[str, Any]:
    """This process's torch threads and build, and the versions of the libraries the sides share."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = {}
    for name in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "torch_file": torch.__file__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "versions": versions,
    }


# ---------------------------------------------------------------- setup (our venv)


def ensure_trl_venv() -> Path:
    """Create the TRL venv once: our site-packages via .pth, torch & co pinned to our versions."""
    python = TRL_VENV / "bin" / "python"
    if python.exists():
        return python
    from importlib.metadata import version

    subprocess.run([sys.executable, "-m", "venv", str(TRL_VENV)], check=True)
    site = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages"))
    Path(site, "_skillmerge_base.pth").write_text(ours + "\n")
    constraints = BUILD / "trl-constraints.txt"
    constraints.write_text("".join(f"{name}=={version(name).split('+')[0]}\n" for name in PINS))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "trl", "-c", str(constraints)], check=True)
    return python


def synthetic_chats(n: int, seed: int) -> list[Any]:
    """Chat records with SFT-like length spread: arithmetic, word echo and list sorting, 1–2 turns."""
    from skillmerge.data.records import ChatRecord, Message

    rng = random.Random(seed)
    records = []
    for i in range(n):
        kind = i % 3
        length = max(3, min(150, round(rng.lognormvariate(math.log(25), 0.8))))
        if kind == 0:
            a, b = rng.randint(0, 999), rng.randint(0, 999)
            turns = [("user", f"What is {a} plus {b}?"), ("assistant", f"{a} plus {b} is {a + b}.")]
        elif kind == 1:
            sentence = " ".join(rng.choice(WORDS) for _ in range(length))
            turns = [("user", f"Repeat after me: {sentence}"), ("assistant", sentence)]
        else:
            numbers = [rng.randint(0, 99) for _ in range(max(2, length // 3))]
            turns = [
                ("user", f"Sort these numbers: {', '.join(map(str, numbers))}"),
                ("assistant", ", ".join(map(str, sorted(numbers)))),
            ]
        messages = [Message("system", "You are a helpful assistant.")] if i % 4 == 0 else []
        messages += [Message(role, text) for role, text in turns]
        records.append(ChatRecord(tuple(messages), id=f"b{i}", source="bench"))
    return records


def prepare_case(name: str, model_dir: Path, records: list[Any], max_len: int) -> dict[str, Any]:
    """Write the chat JSONL (ours) and the identical tokenized JSONL (TRL); count target tokens."""
    from skillmerge.data.records import write_jsonl
    from skillmerge.data.tokenize import tokenize_records
    from skillmerge.models.io import load_model

    folder = BUILD / name
    folder.mkdir(parents=True, exist_ok=True)
    chat, tokenized = folder / "train.jsonl", folder / "tokenized.jsonl"
    write_jsonl(chat, records, overwrite=True)
    _, tokenizer = load_model(model_dir)
    examples, stats = tokenize_records(records, tokenizer, "chatml", max_len)
    with tokenized.open("w") as handle:
        for ex in examples:
            mask = [int(label != -100) for label in ex.labels]
            handle.write(json.dumps({"input_ids": list(ex.input_ids), "completion_mask": mask}) + "\n")
    return {"folder": folder, "chat": chat, "tokenized": tokenized, "stats": stats.to_dict()}


def run_ours(case: dict[str, Any], setup: dict[str, Any], round_: int, _python: Path) -> dict[str, Any]:
    out = case["folder"] / f"ours-{round_}"
    config = {
        "model": str(setup["model"]),
        "out": str(out),
        "data": {"files": [str(case["chat"])], "template": "chatml", "max_len": setup["max_len"]},
        "epochs": setup["epochs"],
        "max_steps": setup.get("max_steps"),
        "lr": setup["lr"],
        "warmup_ratio": setup["warmup_ratio"],
        "batch_size": setup["batch_size"],
        "grad_accum": setup["grad_accum"],
        "seed": 0,
        "overwrite": True,
        "progress": False,
        "log_steps": 10_000,
    }
    if setup.get("lora"):
        config["lora"] = {"enabled": True, **setup["lora"]}
    config_path = case["folder"] / "ours.yaml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "skillmerge", "train", str(config_path)],
        check=True,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process_seconds = time.perf_counter() - started
    manifest = json.loads((out / "manifest.json").read_text())
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    cost = manifest["cost"]
    setup = {
        "threads": manifest.get("threads"),
        "omp_num_threads": _env()["OMP_NUM_THREADS"],
        "versions": manifest.get("library_versions"),
    }
    return {
        "setup": setup,
        "loop_seconds": cost["wall_seconds"],
        "process_seconds": process_seconds,
        "loss_tokens": cost["loss_tokens"],
        "loss_tokens_per_s": cost["loss_tokens"] / cost["wall_seconds"],
        "steps": cost["optimizer_steps"],
        "final_loss": losses[-1],
        "last5_loss": statistics.fmean(losses[-5:]),
        "mean_loss": statistics.fmean(losses),
        "padding_fraction": 1 - cost["tokens"] / cost["padded_tokens"],
    }


def run_trl(case: dict[str, Any], setup: dict[str, Any], round_: int, python: Path) -> dict[str, Any]:
    spec = {
        "model": str(setup["model"]),
        "tokenized": str(case["tokenized"]),
        "out": str(case["folder"] / f"trl-{round_}"),
        "result": str(case["folder"] / f"trl-{round_}.json"),
        **{k: setup[k] for k in ("epochs", "lr", "warmup_ratio", "batch_size", "grad_accum", "max_len")},
        "max_steps": setup.get("max_steps"),
        "lora": setup.get("lora"),
        "seed": 0,
    }
    spec_path = case["folder"] / "trl-spec.json"
    spec_path.write_text(json.dumps(spec))
    started = time.perf_counter()
    done = subprocess.run(
        [str(python), __file__, "--trl-worker", str(spec_path)], env=_env(), capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"TRL run failed:\n{done.stderr[-4000:]}")
    process_seconds = time.perf_counter() - started
    result = json.loads(Path(spec["result"]).read_text())
    losses = result["losses"]
    # TRL trains on every example once per epoch (or max_steps effective batches, in the loader's order).
    epochs = setup["epochs"] if not setup.get("max_steps") else None
    loss_tokens = case["loss_tokens"] * epochs if epochs else None
    if loss_tokens is None:
        raise SystemExit("use epochs (not max_steps) so both sides train on the same target tokens")
    return {
        "setup": result["setup"],
        "loop_seconds": result["train_runtime"],
        "process_seconds": process_seconds,
        "loss_tokens": loss_tokens,
        "loss_tokens_per_s": loss_tokens / result["train_runtime"],
        "steps": result["steps"],
        "final_loss": losses[-1],
        "last5_loss": statistics.fmean(losses[-5:]),
        "mean_loss": statistics.fmean(losses),
    }


def training_set_loss(model_dir: Path, trained: Path, lora: bool, examples: list[Any]) -> float:
    """Mean target-token loss of the trained model over every training example (order-free comparison)."""
    import torch

    from skillmerge.data.packing import bucket_batches, collate_padded
    from skillmerge.models.io import load_model

    model, tokenizer = load_model(model_dir if lora else trained)
    if lora:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, trained).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in bucket_batches(examples, batch_size=16, seed=None):
            tensors = collate_padded([examples[i] for i in batch], pad_id=tokenizer.pad_token_id or 0)
            labels = tensors.pop("labels")[:, 1:]
            logits = model(**tensors, use_cache=False).logits[:, :-1]
            total += torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
            ).item()
            count += int((labels != -100).sum())
    return total / count


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trl-worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=2, help="Alternating rounds per case.")
    parser.add_argument("--skip-smollm2", action="store_true", help="Only the tiny-20m case.")
    args = parser.parse_args()
    if args.trl_worker:
        trl_worker(args.trl_worker)
        return
    run_benchmark(args.rounds, not args.skip_smollm2)


def run_benchmark(rounds: int, smollm2: bool) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from skillmerge.models.tiny import make_tiny_model, train_bpe_tokenizer

    python = ensure_trl_venv()
    cases: dict[str, Any] = {}

    # Case 1: tiny-20m Llama (19M parameters), full finetuning.
    records = synthetic_chats(192, seed=0)
    tiny = BUILD / "tiny-20m"
    if not tiny.exists():
        texts = [m.content for r in records for m in r.messages]
        make_tiny_model("tiny-20m", train_bpe_tokenizer(texts, vocab_size=1024), tiny, seed=0)
    setup = {
        "model": tiny,
        "max_len": 512,
        "epochs": 1,
        "lr": 1e-3,
        "warmup_ratio": 0.03,
        "batch_size": 4,
        "grad_accum": 2,
    }
    cases["tiny-20m-full"] = run_case("tiny-20m-full", setup, records, rounds, python)

    # Case 2: SmolLM2-135M-Instruct with LoRA (r 8, α 16 on the attention and MLP projections).
    if smollm2:
        from skillmerge.models.gguf import import_gguf, smollm2_gguf_path

        smol = BUILD / "smollm2-hf"  # (build/bench/smollm2 holds other benchmarks' models)
        if not smol.exists():
            import_gguf(smollm2_gguf_path(), smol)
        lora = {
            "r": 8,
            "alpha": 16,
            "dropout": 0.0,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        }
        setup = {
            "model": smol,
            "max_len": 256,
            "epochs": 1,
            "lr": 2e-4,
            "warmup_ratio": 0.03,
            "batch_size": 4,
            "grad_accum": 2,
            "lora": lora,
        }
        cases["smollm2-135m-lora"] = run_case(
            "smollm2-135m-lora", setup, synthetic_chats(48, seed=1), 1, python
        )

    from importlib.metadata import version

    report = {
        "benchmark": "skillmerge SFT recipe vs TRL SFTTrainer, CPU, loss tokens per second",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": 1,
            "note": "2-core VM shared with other jobs; runs alternate ours/TRL",
        },
        "versions": {name: version(name) for name in ("torch", "transformers", "accelerate", "peft")}
        | {"trl": _trl_version(python)},
        "ours_batching": "random effective batches; per step, length-sorted micro-batches cut to minimise "
        "padded tokens + 32 per extra forward, under batch_size x max_len tokens",
        "trl_batching": "random micro-batches of batch_size examples padded to their longest (TRL default)",
        "gpu": "not measured: no GPU machine was lent to this session (no bf16 tokens/s or MFU)",
        "cases": cases,
        "torch_threads": torch.get_num_threads(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str) + "\n")
    for name, case in cases.items():
        s = case["summary"]
        print(
            f"{name}: loss tokens/s ours {s['ours_loss_tokens_per_s']:.1f} "
            f"vs TRL {s['trl_loss_tokens_per_s']:.1f} "
            f"= {s['speed_ratio']:.2f}x; training-set loss after training ours "
            f"{s['ours_train_set_loss']:.4f} vs TRL {s['trl_train_set_loss']:.4f}; last-5-step loss ours "
            f"{s['ours_last5_loss']:.4f} vs TRL {s['trl_last5_loss']:.4f}"
        )
    print(f"wrote {RESULTS}")


def run_case(
    name: str, setup: dict[str, Any], records: list[Any], rounds: int, python: Path
) -> dict[str, Any]:
    """Alternate ours / TRL ``rounds`` times on one model and data set; medians and ratios."""
    from skillmerge.train.data import shifted_loss_tokens

    case = prepare_case(name, setup["model"], records, setup["max_len"])
    from skillmerge.data.tokenize import tokenize_records
    from skillmerge.models.io import load_model

    _, tokenizer = load_model(setup["model"])
    examples, _ = tokenize_records(records, tokenizer, "chatml", setup["max_len"])
    case["loss_tokens"] = sum(shifted_loss_tokens(ex.labels) for ex in examples)
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "trl": []}
    lora = bool(setup.get("lora"))
    for r in range(rounds):
        for side, go in (("ours", run_ours), ("trl", run_trl)):
            result = go(case, setup, r, python)
            result["train_set_loss"] = training_set_loss(
                setup["model"], case["folder"] / f"{side}-{r}", lora, examples
            )
            runs[side].append(result)
            print(
                f"{name} round {r}: {side} {result['loss_tokens_per_s']:.1f} loss tok/s, "
                f"training-set loss after training {result['train_set_loss']:.4f} "
                f"({result['setup'].get('threads')} torch thread(s))",
                flush=True,
            )

    def median(side: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[side])

    summary = {
        "ours_loss_tokens_per_s": median("ours", "loss_tokens_per_s"),
        "trl_loss_tokens_per_s": median("trl", "loss_tokens_per_s"),
        "ours_last5_loss": median("ours", "last5_loss"),
        "trl_last5_loss": median("trl", "last5_loss"),
        "ours_final_loss": median("ours", "final_loss"),
        "trl_final_loss": median("trl", "final_loss"),
        "ours_train_set_loss": median("ours", "train_set_loss"),
        "trl_train_set_loss": median("trl", "train_set_loss"),
    }
    summary["speed_ratio"] = summary["ours_loss_tokens_per_s"] / summary["trl_loss_tokens_per_s"]
    summary["loss_ratio_last5"] = summary["ours_last5_loss"] / summary["trl_last5_loss"]
    summary["loss_ratio_train_set"] = summary["ours_train_set_loss"] / summary["trl_train_set_loss"]
    setup_out = {k: (str(v) if isinstance(v, Path) else v) for k, v in setup.items()}
    differs = setup_differences(runs)
    if differs:
        print(f"{name}: the two sides did not run alike: {'; '.join(differs)}", flush=True)
    return {
        "setup": setup_out,
        "sides": {side: runs[side][0]["setup"] for side in runs if runs[side]},
        "setup_differs": differs,
        "examples": len(examples),
        "loss_tokens_per_epoch": case["loss_tokens"],
        "tokenize_stats": case["stats"],
        "runs": runs,
        "summary": summary,
    }


def setup_differences(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """What differs between the sides' training processes (threads, shared library versions), or changed
    between rounds of one side: a speed ratio means little when it does."""
    setups = {side: [run["setup"] for run in side_runs] for side, side_runs in runs.items()}
    out: list[str] = []
    for side, seen in setups.items():
        threads = sorted({str(s.get("threads")) for s in seen})
        if len(threads) > 1:
            out.append(f"{side} threads changed between rounds: {', '.join(threads)}")
    if not all(setups.values()):
        return out
    ours, trl = setups["ours"][0], setups["trl"][0]
    if ours.get("threads") != trl.get("threads"):
        out.append(f"threads: ours {ours.get('threads')}, TRL {trl.get('threads')}")
    for name in ("torch", "transformers", "accelerate"):
        a = (ours.get("versions") or {}).get(name)
        b = (trl.get("versions") or {}).get(name)
        if a and b and a.split("+")[0] != b.split("+")[0]:
            out.append(f"{name}: ours {a}, TRL {b}")
    return out


def _trl_version(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import trl; print(trl.__version__)"], capture_output=True, text=True
    ).stdout.strip()


if __name__ == "__main__":
    main()
