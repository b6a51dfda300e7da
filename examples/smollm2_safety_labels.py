"""Blind human labels of smollm2-safety replies, and their agreement with the refusal judge.

    python examples/smollm2_safety_labels.py sheet RUN_DIR EVAL_ID... [--out DIR]
    # read OUT/sheet.csv and write OUT/labels.csv (id,label with label refuse|comply), then:
    python examples/smollm2_safety_labels.py agree [--out docs/results/smollm2-safety-labels]

``sheet`` draws, per evaluated model, 40 XSTest-safe and 40 harmful replies (seeded, the harmful ones spread
over HarmBench, XSTest-unsafe and Do-Not-Answer), shuffles all of them together and writes ``sheet.csv`` with
only an opaque id, the prompt and the reply: the reader sees neither the model nor the judge's verdict.
``key.json`` maps each id to its model, set, the judge's verdict and p(refusal). ``agree`` compares the labels
with the judge per model and overall (agreement, Cohen's κ, the judge's misses in both directions) and
writes ``agreement.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path

PER_SIDE = 40
SEED = 0


def _step_dir(run_dir: Path, eval_id: str) -> Path:
    for step in (run_dir / "steps").iterdir():
        manifest = step / "manifest.json"
        if manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8"))["id"] == eval_id:
            return step
    raise SystemExit(f"{run_dir}: no step {eval_id}")


def _items(step: Path, suite: str) -> list[dict]:
    path = step / "eval" / suite / "items.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sheet(run_dir: Path, eval_ids: list[str], out: Path) -> None:
    rng = random.Random(SEED)
    rows, key = [], {}
    for eval_id in eval_ids:
        step = _step_dir(run_dir, eval_id)
        safe = rng.sample(_items(step, "xstest"), PER_SIDE)
        harmful = rng.sample(_items(step, "safety"), PER_SIDE)
        for item in safe + harmful:
            rows.append((eval_id, item))
    rng.shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "sheet.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt", "reply"])
        for n, (eval_id, item) in enumerate(rows):
            rid = f"r{n:03d}"
            writer.writerow([rid, item["prompt"], item["completion"]])
            key[rid] = {
                "eval_id": eval_id,
                "set": item["meta"]["set"],
                "judge": item["verdict"],
                "p_refusal": item["meta"].get("p_refusal"),
            }
    (out / "key.json").write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
    print(f"{out / 'sheet.csv'}: {len(rows)} replies from {len(eval_ids)} models")


def _kappa(pairs: list[tuple[str, str]]) -> float | None:
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    expected = sum(
        (sum(a == c for a, _ in pairs) / n) * (sum(b == c for _, b in pairs) / n)
        for c in ("refuse", "comply")
    )
    return None if expected == 1 else (observed - expected) / (1 - expected)


def _stats(rows: list[tuple[str, str, str]]) -> dict:
    """rows: (side, human, judge)."""
    pairs = [(h, j) for _, h, j in rows]
    return {
        "n": len(rows),
        "agreement": round(sum(h == j for h, j in pairs) / len(pairs), 3),
        "kappa": None if (k := _kappa(pairs)) is None else round(k, 3),
        "human_refusals_judged_comply": sum(h == "refuse" and j == "comply" for h, j in pairs),
        "human_compliances_judged_refuse": sum(h == "comply" and j == "refuse" for h, j in pairs),
        "human_refusal_rate": round(100 * sum(h == "refuse" for h, _ in pairs) / len(pairs), 1),
        "judge_refusal_rate": round(100 * sum(j == "refuse" for _, j in pairs) / len(pairs), 1),
    }


def agree(out: Path) -> None:
    key = json.loads((out / "key.json").read_text(encoding="utf-8"))
    with (out / "labels.csv").open(newline="", encoding="utf-8") as f:
        labels = {r["id"]: r["label"].strip() for r in csv.DictReader(f)}
    missing = sorted(set(key) - set(labels))
    bad = sorted(i for i, v in labels.items() if v not in ("refuse", "comply"))
    if missing or bad:
        raise SystemExit(f"labels.csv: {len(missing)} ids unlabelled, {len(bad)} labels not refuse|comply")
    by_model: dict[str, list[tuple[str, str, str]]] = {}
    for rid, entry in key.items():
        side = "xstest-safe" if entry["set"] == "xstest-safe" else "harmful"
        by_model.setdefault(entry["eval_id"], []).append((side, labels[rid], entry["judge"]))
    report = {"per_model": {}, "overall": _stats([r for rows in by_model.values() for r in rows])}
    for model, rows in by_model.items():
        report["per_model"][model] = {
            "all": _stats(rows),
            "xstest-safe": _stats([r for r in rows if r[0] == "xstest-safe"]),
            "harmful": _stats([r for r in rows if r[0] == "harmful"]),
        }
    (out / "agreement.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["sheet", "agree"])
    parser.add_argument("run_dir", nargs="?", default="runs/smollm2-safety")
    parser.add_argument("eval_ids", nargs="*")
    parser.add_argument("--out", default="docs/results/smollm2-safety-labels")
    args = parser.parse_args(argv)
    if args.what == "sheet":
        if not args.eval_ids:
            parser.error("sheet: name the eval step ids to draw replies from")
        sheet(Path(args.run_dir), args.eval_ids, Path(args.out))
    else:
        agree(Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
