"""Tables for docs/results/smollm2-safety.md from a finished run of examples/smollm2-safety.yaml.

    python examples/smollm2_safety_results.py [runs/smollm2-safety] [--spec SPEC] [--no-prob]

Prints markdown: one row per model (θ_G, CFT, CFT+replay, PTM at each ω) with judged refusal per harmful
set, XSTest-safe compliance, HumanEval pass@1, math and MC accuracy, perplexity on held-out θ_G answers,
p(refusal) and training cost; then the ω chosen by the heuristic |D|/|G| and by the validation pick. Also
writes ``RUN_DIR/smollm2-safety-summary.json``.

p(refusal) is measured, not judged: for each prompt, the probability that the reply starts with one of the
decline sentences the skill data uses (``skillmerge.data.refusals.DECLINES``), Σ_d p(d | prompt); the
declines are disjoint sequences, so the sum is the probability of starting with any of them. It moves before
greedy behaviour does. Prompts: the first 20 evaluated items of each harmful set and 40 XSTest-safe ones.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

STEPS = "steps"


def _step_dirs(run_dir: Path) -> dict[str, Path]:
    found = {}
    for path in (run_dir / STEPS).iterdir():
        if path.name.startswith(".") or not (path / "manifest.json").exists():
            continue
        step_id = path.name.rsplit(".", 1)[0].replace("--", "/")
        found[step_id] = path
    return found


def _suite(step: Path, name: str) -> dict:
    path = step / "eval" / name / "summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _items(step: Path, name: str) -> list[dict]:
    path = step / "eval" / name / "items.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _metric(summary: dict, *names: str) -> float | None:
    metrics = summary.get("metrics", {})
    for name in names:
        if name in metrics:
            return float(metrics[name])
    return None


def _model_dir(dirs: dict[str, Path], eval_id: str, spec_general: str) -> str:
    if eval_id == "eval/general":
        return spec_general
    model_step = eval_id.replace("eval/", "train/", 1)
    if model_step.startswith("train/ptm/"):
        model_step = "merge/" + eval_id.removeprefix("eval/")
    return str(dirs[model_step] / "model")


def p_refusal(model_dir: str, prompts: list[str]) -> list[float]:
    from skillmerge.data.refusals import DECLINES
    from skillmerge.evaluate.generate import HFBackend

    backend = HFBackend.from_dir(model_dir, batch_size=16)
    backend.progress = False
    requests = [([{"role": "user", "content": p}], decline) for p in prompts for decline in DECLINES]
    logps = backend.loglikelihood(requests)
    k = len(DECLINES)
    return [sum(math.exp(lp) for lp in logps[i * k : (i + 1) * k]) for i in range(len(prompts))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default="runs/smollm2-safety")
    parser.add_argument("--no-prob", action="store_true", help="skip p(refusal) (loads every model)")
    parser.add_argument("--spec", default="examples/smollm2-safety.yaml", help="the spec the run used")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    spec_path = Path(args.spec)  # run.json names the spec, not its file
    from skillmerge.experiment.select import heuristic_omega, pick_omega
    from skillmerge.experiment.spec import load_spec

    spec = load_spec(spec_path)
    dirs = _step_dirs(run_dir)
    evals = sorted(
        (s for s in dirs if s.startswith("eval/")),
        key=lambda s: (0 if s == "eval/general" else 1 if "/cft/" in s else 2 if "cft_replay" in s else 3, s),
    )
    rows = []
    prompts_harmful: list[str] = []
    prompts_safe: list[str] = []
    for eval_id in evals:
        step = dirs[eval_id]
        safety, xstest = _suite(step, "safety"), _suite(step, "xstest")
        if not prompts_harmful:
            by_set: dict[str, list[str]] = {}
            for item in _items(step, "safety"):
                by_set.setdefault(item["meta"]["set"], []).append(item["prompt"])
            prompts_harmful = [p for ps in by_set.values() for p in ps[:20]]
            prompts_safe = [item["prompt"] for item in _items(step, "xstest")][:40]
        label = eval_id.removeprefix("eval/")
        manifest = json.loads((step / "manifest.json").read_text(encoding="utf-8"))
        row = {
            "model": "θ_G" if label == "general" else label,
            "harmbench_refusal": 100 - (_metric(safety, "harmbench_compliance") or 0),
            "xstest_unsafe_refusal": 100 - (_metric(safety, "xstest-unsafe_compliance") or 0),
            "dna_test_refusal": 100 - (_metric(safety, "donotanswer_compliance") or 0),
            "xstest_safe_compliance": _metric(xstest, "xstest_safe_compliance"),
            "humaneval_pass1": _metric(_suite(step, "coding"), "pass@1"),
            "math": _metric(_suite(step, "general-gsm"), "score"),
            "mc": _metric(_suite(step, "general-mc"), "score"),
            "perplexity": _metric(_suite(step, "perplexity"), "perplexity"),
            "scores": manifest["result"]["scores"],
            "model_dir": _model_dir(dirs, eval_id, spec.models.general or ""),
        }
        train_id = eval_id.replace("eval/", "train/", 1)
        if label.startswith("ptm/"):
            train_id = "train/skill/" + label.split("/", 2)[2].rsplit("/", 1)[0]
        if train_id in dirs:
            cost = json.loads((dirs[train_id] / "manifest.json").read_text(encoding="utf-8"))["result"][
                "cost"
            ]
            row["cost"] = {k: cost.get(k) for k in ("tokens", "flops", "wall_seconds", "optimizer_steps")}
        rows.append(row)

    if not args.no_prob:
        for row in rows:
            harmful = p_refusal(row["model_dir"], prompts_harmful)
            safe = p_refusal(row["model_dir"], prompts_safe)
            row["p_refusal_harmful"] = sum(harmful) / len(harmful)
            row["p_refusal_safe"] = sum(safe) / len(safe)
            print(
                f"p(refusal) {row['model']}: {row['p_refusal_harmful']:.3f} / {row['p_refusal_safe']:.3f}",
                file=sys.stderr,
            )

    # ω rules: the heuristic |D|/|G| and the validation pick (as the runner computes them for merges).
    counts = {
        s: json.loads((p / "manifest.json").read_text())["result"].get("examples")
        for s, p in dirs.items()
        if s.startswith("data/")
    }
    n_skill = next(v for k, v in counts.items() if k.startswith("data/safety"))
    n_general = counts["data/general"]
    sweep = {}
    baseline = None
    for step_id, path in dirs.items():
        if not step_id.startswith("eval-validation/"):
            continue
        result = json.loads((path / "manifest.json").read_text(encoding="utf-8"))["result"]
        if step_id == "eval-validation/general":
            baseline = result["scores"]["general"]
        else:
            omega = float(step_id.rsplit("/w", 1)[1])
            sweep[omega] = (float(result["chat"]["score"]), float(result["scores"]["general"]))
    picked = pick_omega(sweep, baseline, spec.selection.epsilon) if sweep and baseline is not None else None
    selection = {
        "heuristic": heuristic_omega(n_skill, n_general),
        "n_skill": n_skill,
        "n_general": n_general,
        "validation_pick": picked,
        "validation_sweep": {f"{w:g}": {"skill_f1": s, "general": g} for w, (s, g) in sorted(sweep.items())},
        "validation_general_theta_G": baseline,
        "epsilon": spec.selection.epsilon,
    }
    summary = {"rows": rows, "selection": selection}
    (run_dir / "smollm2-safety-summary.json").write_text(
        json.dumps(summary, indent=2) + "\n", encoding="utf-8"
    )

    def fmt(value: float | None, digits: int = 1) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    print(
        "| model | HarmBench refusal % | XSTest-unsafe refusal % | DNA-test refusal % | p(refusal) harmful | "
        "XSTest-safe compliance % | p(refusal) safe | HumanEval pass@1 | math acc | MC acc | perplexity | "
        "train tokens | FLOPs | train s |"
    )
    print("|" + "---|" * 14)
    for row in rows:
        cost = row.get("cost") or {}
        flops = "—" if not cost.get("flops") else f"{cost['flops']:.2e}"
        print(
            f"| {row['model']} | {fmt(row['harmbench_refusal'])} | {fmt(row['xstest_unsafe_refusal'])} | "
            f"{fmt(row['dna_test_refusal'])} | {fmt(row.get('p_refusal_harmful'), 3)} | "
            f"{fmt(row['xstest_safe_compliance'])} | {fmt(row.get('p_refusal_safe'), 3)} | "
            f"{fmt(row['humaneval_pass1'], 3)} | {fmt(row['math'], 3)} | {fmt(row['mc'], 3)} | "
            f"{fmt(row['perplexity'], 2)} | {cost.get('tokens', '—')} | "
            f"{flops} | {fmt(cost.get('wall_seconds'), 0)} |"
        )
    print()
    print(json.dumps(selection, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
