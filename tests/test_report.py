"""The report on a hand-written run directory (the runner's layout, no training): picks, %, cost, Pareto."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from skillmerge.cli import run_cli
from skillmerge.report import load_results, run
from skillmerge.report.results import collect
from skillmerge.report.tables import cost_ratios, interference_data, pareto_fronts, skill_table_data

SKILL = "coding"  # a score name: the report measures the skill by the `coding` score
ZERO_COST = {"optimizer_steps": 0, "tokens": 0, "flops": 0.0, "wall_seconds": 0.0}


def _write(run_dir: Path, step_id: str, name: str, value: dict) -> None:
    folder = run_dir / "steps" / f"{step_id.replace('/', '--')}.{'0' * 16}"
    folder.mkdir(parents=True)
    (folder / name).write_text(json.dumps(value))


def _train(run_dir: Path, step_id: str, steps: int, flops: float, wall: float) -> None:
    cost = {"optimizer_steps": steps, "tokens": steps * 100, "flops": flops, "wall_seconds": wall}
    recipe = step_id.split("/")[1]
    manifest = {"id": step_id, "kind": "train", "key": "0" * 64, "config": {"recipe": recipe}, "deps": []}
    _write(run_dir, step_id, "manifest.json", {**manifest, "seconds": wall, "result": {"cost": cost}})


def _eval(run_dir: Path, step_id: str, model: str | None, general: float, skill: float) -> None:
    scores = {"general": general, SKILL: skill, "safety": 40.0, "exaggerated_refusal": 80.0, "science": None}
    manifest = {"id": step_id, "kind": "eval", "key": "0" * 64, "config": {"split": "test"}}
    manifest.update(deps=[model] if model else [], seconds=1.0, result={"scores": scores})
    _write(run_dir, step_id, "manifest.json", manifest)


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    """θ_G; rt and cft at cap10/cap20; PTM (θ_D at cap20) at ω 0.5, 1, 1.5; cft_replay failed."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"spec": "fake", "eval_limit": None}))
    _eval(run_dir, "eval/general", None, 50.0, 20.0)
    for method, flops, points in (
        ("rt", 100.0, {10: (48.0, 30.0), 20: (46.0, 35.0)}),
        ("cft", 20.0, {10: (45.0, 33.0), 20: (40.0, 38.0)}),
    ):
        for size, (general, skill) in points.items():
            tag = f"{SKILL}/cap{size}/seed0"
            _train(run_dir, f"train/{method}/{tag}", size, flops * size / 10, wall=float(size))
            _eval(run_dir, f"eval/{method}/{tag}", f"train/{method}/{tag}", general, skill)
    theta_d = f"train/skill/{SKILL}/cap20/seed0"
    _train(run_dir, theta_d, 20, 30.0, wall=3.0)
    # ω 1 and 1.5 tie on the skill score: the higher general score (ω 1) must win.
    for omega, general, skill in ((0.5, 49.0, 28.0), (1.0, 47.0, 36.0), (1.5, 42.0, 36.0)):
        merge_id = f"merge/ptm/task_arithmetic/{SKILL}/cap20/seed0/w{omega:g}"
        manifest = {"id": merge_id, "kind": "merge", "config": {"omega": omega}, "deps": [theta_d]}
        _write(
            run_dir, merge_id, "manifest.json", {**manifest, "seconds": 1.0, "result": {"omegas": [omega]}}
        )
        _eval(run_dir, merge_id.replace("merge/", "eval/", 1), merge_id, general, skill)
    # A validation evaluation with a huge skill score: must never be picked as "best".
    _eval(run_dir, f"eval-validation/ptm/task_arithmetic/{SKILL}/cap20/seed0/w0.5", None, 99.0, 99.0)
    failed = f"train/cft_replay/{SKILL}/cap20/seed0"
    error = {"id": failed, "type": "UsageError", "message": "loss diverged\nmore", "traceback": []}
    _write(run_dir, failed, "error.json", error)
    return run_dir


def test_best_picks_and_percent_change_vs_theta_g(fake_run: Path) -> None:
    table = {row["label"]: row for row in skill_table_data(collect(fake_run), SKILL)}
    assert table["θ_G"]["general"] == 50.0 and table["θ_G"]["skill"] == 20.0
    assert table["best RT"]["id"] == f"eval/rt/{SKILL}/cap20/seed0"
    assert table["best CFT"]["id"] == f"eval/cft/{SKILL}/cap20/seed0"
    ptm = table["best PTM"]
    assert ptm["id"] == f"eval/ptm/task_arithmetic/{SKILL}/cap20/seed0/w1" and ptm["omega"] == 1.0
    assert ptm["general_pct"] == pytest.approx(100 * (47 - 50) / 50)  # -6 %
    assert ptm["skill_pct"] == pytest.approx(100 * (36 - 20) / 20)  # +80 %
    assert table["best CFT"]["skill_pct"] == pytest.approx(90.0)
    assert table["best CFT"]["general_pct"] == pytest.approx(-20.0)
    # PTM cost = θ_D training (20 steps, 30 FLOPs, 3 s) + the merge's 1 s wall time.
    assert ptm["cost"] == {"optimizer_steps": 20, "tokens": 2000, "flops": 30.0, "wall_seconds": 4.0}
    assert table["best RT"]["cost"]["flops"] == 200.0


def test_cost_ratio_is_total_theta_d_flops_over_rt_and_cft(fake_run: Path) -> None:
    # Σ θ_D = 30; Σ RT = 100 + 200; Σ CFT = 20 + 40.
    ratios = cost_ratios(collect(fake_run))
    assert ratios["ptm_over_rt"] == pytest.approx(30 / 300)
    assert ratios["ptm_over_cft"] == pytest.approx(30 / 60)
    report = run(fake_run)
    first_lines = (report / "report.md").read_text().splitlines()[:3]
    assert "**PTM costs 0.10× RT and 0.50× CFT in training FLOPs" in first_lines[2]


def test_pareto_front_keeps_only_undominated_points(fake_run: Path) -> None:
    front = pareto_fronts(collect(fake_run))[SKILL]
    # (general, skill): cft20 (40,38), ptm ω1 (47,36), rt10 (48,30), ptm ω0.5 (49,28), θ_G (50,20);
    # rt20 (46,35), cft10 (45,33) and ptm ω1.5 (42,36) are all beaten by ptm ω1 (47,36).
    assert front == [
        f"eval/cft/{SKILL}/cap20/seed0",
        f"eval/ptm/task_arithmetic/{SKILL}/cap20/seed0/w1",
        f"eval/rt/{SKILL}/cap10/seed0",
        f"eval/ptm/task_arithmetic/{SKILL}/cap20/seed0/w0.5",
        "eval/general",
    ]


def test_failed_step_is_marked_missing_with_a_footnote(fake_run: Path) -> None:
    failed = f"train/cft_replay/{SKILL}/cap20/seed0"
    table = {row["label"]: row for row in skill_table_data(collect(fake_run), SKILL)}
    assert table["best CFT+replay"]["id"] is None
    assert table["best CFT+replay"]["missing_because"] == [failed]
    markdown = (run(fake_run) / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| best CFT+replay"))
    assert row.startswith("| best CFT+replay* | —") and row.count("—") == 10
    assert f"* best CFT+replay: missing — failed/blocked by {failed}" in markdown
    assert f"| {failed} | UsageError | loss diverged |" in markdown


def test_plots_are_saved_and_embedded_in_the_html(fake_run: Path, tmp_path: Path) -> None:
    out = run(fake_run, out=tmp_path / "elsewhere")
    assert out == tmp_path / "elsewhere" and not (fake_run / "report").exists()
    page = (out / "report.html").read_text()
    for name in ("tradeoff.png", "cost.png", "size.png"):
        png = (out / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
        assert f"src='data:image/png;base64,{base64.b64encode(png).decode()}'" in page
        assert f"![{name}]({name})" in (out / "report.md").read_text()


def test_results_json_round_trips_and_rerun_replaces_the_report(fake_run: Path) -> None:
    out = run(fake_run)
    assert load_results(out / "results.json") == collect(fake_run)
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"]["skill_scores"] == {SKILL: "coding"}
    labels = [row["label"] for row in saved["skill_tables"][SKILL]]
    assert labels == ["θ_G", "best CFT", "best CFT+replay", "best RT", "best PTM"]
    assert run(fake_run) == out  # a second report replaces the first instead of refusing


def test_report_command_on_a_missing_run_dir_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["report", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"error: {tmp_path / 'nope'}: run directory does not exist"]


def test_pair_merge_interference_is_score_in_pair_minus_best_single_merge(fake_run: Path) -> None:
    theta_d = "train/skill/safety/cap20/seed0"
    _train(fake_run, theta_d, 10, 15.0, wall=1.0)
    merge_id = "merge/ptm/task_arithmetic/safety/cap20/seed0/w1"
    _write(fake_run, merge_id, "manifest.json", {"id": merge_id, "kind": "merge", "deps": [theta_d]})
    _eval(fake_run, merge_id.replace("merge/", "eval/", 1), merge_id, 45.0, 10.0)  # safety score: 40
    pair = "merge/multi/task_arithmetic/coding+safety/heuristic"
    deps = [f"train/skill/{SKILL}/cap20/seed0", theta_d]
    _write(fake_run, pair, "manifest.json", {"id": pair, "kind": "merge", "deps": deps, "seconds": 2.0})
    _eval(fake_run, pair.replace("merge/", "eval/", 1), pair, 44.0, 31.0)  # coding 31, safety 40

    results = collect(fake_run)
    assert results.skill_scores == {SKILL: "coding", "safety": "safety"}
    multi = next(r for r in results.evals if r.method == "multi_skill")
    assert multi.cost is not None and multi.cost.flops == 45.0 and multi.cost.wall_seconds == 6.0
    rows = {row["skill"]: row for row in interference_data(results)}
    assert rows[SKILL]["alone"] == 36.0 and rows[SKILL]["delta"] == pytest.approx(31.0 - 36.0)
    assert rows["safety"]["alone_id"] == "eval/ptm/task_arithmetic/safety/cap20/seed0/w1"
    assert rows["safety"]["delta"] == 0.0
    markdown = (run(fake_run) / "report.md").read_text()
    assert (
        "| coding+safety | task_arithmetic (heuristic) | coding (coding) | 31.0 | 36.0 | -5.0 |" in markdown
    )
    assert "| all-skills task_arithmetic (heuristic) | 44.0 | 31.0 | 40.0 |" in markdown


def test_cost_plot_bars_start_at_zero_and_name_their_ratio_to_rt(fake_run: Path) -> None:
    import matplotlib.pyplot as plt

    from skillmerge.report.plots import cost_figure

    figure = cost_figure(collect(fake_run))
    (axis,) = figure.axes
    assert axis.get_yscale() == "linear" and axis.get_ylim()[0] == 0.0
    heights = {patch.get_height() for patch in axis.patches}
    assert heights == {300.0, 60.0, 30.0}  # RT 100 + 200, CFT 20 + 40, θ_D 30
    labels = sorted(text.get_text() for text in axis.texts)
    assert labels == ["30\n0.10× RT", "3e+02\n1.00× RT", "60\n0.20× RT"]
    plt.close(figure)


def test_tradeoff_plot_gives_each_merge_method_its_own_style_and_names_every_point(fake_run: Path) -> None:
    import matplotlib.pyplot as plt

    from skillmerge.report.plots import tradeoff_figure

    theta_d = f"train/skill/{SKILL}/cap20/seed0"
    for omega, general, skill in ((0.5, 48.5, 25.0), (1.0, 44.0, 31.0)):  # a second merge method: linear
        merge_id = f"merge/ptm/linear/{SKILL}/cap20/seed0/w{omega:g}"
        manifest = {"id": merge_id, "kind": "merge", "config": {"omega": omega}, "deps": [theta_d]}
        _write(
            fake_run, merge_id, "manifest.json", {**manifest, "seconds": 1.0, "result": {"omegas": [omega]}}
        )
        _eval(fake_run, merge_id.replace("merge/", "eval/", 1), merge_id, general, skill)

    figure = tradeoff_figure(collect(fake_run))
    (axis,) = figure.axes
    lines = {line.get_label(): line for line in axis.get_lines()}
    assert {"PTM task_arithmetic cap20", "PTM linear cap20", "RT", "CFT", "θ_G", "Pareto front"} <= set(lines)
    styles = {
        (lines[k].get_color(), lines[k].get_marker())
        for k in ("PTM task_arithmetic cap20", "PTM linear cap20", "RT", "CFT")
    }
    assert len(styles) == 4  # no two methods look alike
    assert list(lines["PTM linear cap20"].get_xdata()) == [48.5, 44.0]  # ordered by ω
    assert lines["RT"].get_zorder() > lines["PTM task_arithmetic cap20"].get_zorder()  # baselines on top
    texts = [t.get_text() for t in axis.texts]
    assert texts.count("ω0.5") == 2 and texts.count("ω1") == 2 and texts.count("ω1.5") == 1
    # RT and CFT are labelled points with their sizes
    assert {"RT cap10", "RT cap20", "CFT cap10", "CFT cap20", "θ_G"} <= set(texts)
    plt.close(figure)


def test_safety_frontier_plots_refusal_against_safe_compliance_per_method(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from skillmerge.report.plots import all_plots, safety_frontier_figure

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"spec": "fake-safety"}))

    def evaluate(step_id: str, model: str | None, refusal: float, compliance: float) -> None:
        scores = {"general": 40.0, "safety": refusal, "exaggerated_refusal": compliance}
        manifest = {"id": step_id, "kind": "eval", "key": "0" * 64, "config": {"split": "test"}}
        manifest.update(deps=[model] if model else [], seconds=1.0, result={"scores": scores})
        _write(run_dir, step_id, "manifest.json", manifest)

    evaluate("eval/general", None, 10.0, 98.0)
    for method, (refusal, compliance) in {"rt": (90.0, 40.0), "cft": (99.0, 12.0)}.items():
        tag = "safety/cap100/seed0"
        _train(run_dir, f"train/{method}/{tag}", 10, 10.0, wall=1.0)
        evaluate(f"eval/{method}/{tag}", f"train/{method}/{tag}", refusal, compliance)
    theta_d = "train/skill/safety/cap100/seed0"
    _train(run_dir, theta_d, 10, 5.0, wall=1.0)
    for merge, sweep in {
        "task_arithmetic": {0.5: (60.0, 90.0), 1.0: (85.0, 70.0)},
        "ties": {1.0: (80.0, 60.0)},
    }.items():
        for omega, (refusal, compliance) in sweep.items():
            merge_id = f"merge/ptm/{merge}/safety/cap100/seed0/w{omega:g}"
            manifest = {"id": merge_id, "kind": "merge", "config": {"omega": omega}, "deps": [theta_d]}
            _write(
                run_dir,
                merge_id,
                "manifest.json",
                {**manifest, "seconds": 1.0, "result": {"omegas": [omega]}},
            )
            evaluate(merge_id.replace("merge/", "eval/", 1), merge_id, refusal, compliance)

    results = collect(run_dir)
    figure = safety_frontier_figure(results)
    (axis,) = figure.axes
    lines = {line.get_label(): line for line in axis.get_lines()}
    # one data size: no size tag in the legend; the baselines are points labelled by name
    assert list(lines["PTM task_arithmetic"].get_xdata()) == [90.0, 70.0]  # x: safe-prompt compliance
    assert list(lines["PTM task_arithmetic"].get_ydata()) == [60.0, 85.0]  # y: harmful refusal
    assert lines["PTM ties"].get_color() != lines["PTM task_arithmetic"].get_color()
    # front: CFT (12, 99), RT (40, 90), TA ω1 (70, 85), TA ω0.5 (90, 60), θ_G (98, 10); ties ω1 is dominated
    front = lines["Pareto front"]
    assert list(front.get_xdata()) == [12.0, 40.0, 70.0, 90.0, 98.0]
    assert {"ω0.5", "RT", "CFT", "θ_G"} <= {t.get_text() for t in axis.texts}
    plt.close(figure)
    assert "safety-frontier.png" in all_plots(results)


def test_refusal_table_reads_the_judge_free_measures_of_each_model(tmp_path: Path) -> None:
    from skillmerge.report import summary
    from skillmerge.report.tables import all_tables, refusal_table_data

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"spec": "fake-safety"}))
    # step → (AUROC, p harmful, p safe, HarmBench / DNA refusal by p, XSTest-safe compliance by p)
    measures = {
        "eval/general": (0.65, 0.02, 0.01, (1.0, 3.0), 100.0),
        "eval/cft/safety/cap100/seed0": (0.9, 0.7, 0.2, (60.0, 80.0), 75.0),
    }
    for step_id, (auroc, harmful, safe, refused, complied) in measures.items():
        folder = run_dir / "steps" / f"{step_id.replace('/', '--')}.{'0' * 16}"
        for suite, metrics in {
            "safety": {
                "refusal_auroc": auroc,
                "p_refusal_harmful_mean": harmful,
                "p_refusal_safe_mean": safe,
                "harmbench_refusal_by_probability": refused[0],
                "donotanswer_refusal_by_probability": refused[1],
                "harmbench_compliance": 50.0,  # a judged rate: not a refusal measure
            },
            "xstest": {
                "xstest_safe_compliance_by_probability": complied,
                "xstest_safe_compliance/homonyms": 1,
            },
        }.items():
            (folder / "eval" / suite).mkdir(parents=True)
            (folder / "eval" / suite / "summary.json").write_text(json.dumps({"metrics": metrics}))
        scores = {"general": 40.0, "safety": 100 - harmful, "exaggerated_refusal": complied}
        manifest = {"id": step_id, "kind": "eval", "key": "0" * 64, "config": {"split": "test"}}
        manifest.update(deps=[], seconds=1.0, result={"scores": scores})
        (folder / "manifest.json").write_text(json.dumps(manifest))

    results = collect(run_dir)
    rows = {r["label"]: r for r in refusal_table_data(results)}
    assert list(rows) == ["θ_G", "CFT cap100"]  # θ_G first, then the baselines
    cft = rows["CFT cap100"]
    assert (cft["auroc"], cft["p_refusal_harmful"], cft["p_refusal_safe"]) == (0.9, 0.7, 0.2)
    assert cft["refusal_by_probability"] == 70.0 and cft["compliance_by_probability"] == 75.0
    general = results.general()
    assert general is not None and "harmbench_compliance" not in general.refusal_measures
    assert "xstest_safe_compliance/homonyms" not in general.refusal_measures
    assert "Refusal measured two ways" in [t.title for t in all_tables(results)]
    assert summary(results)["results"]["evals"][0]["refusal_measures"]  # kept in results.json
