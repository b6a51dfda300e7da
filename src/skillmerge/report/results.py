"""Collect a run's results from its step directories: one row per evaluation, with the model's cost.

Reads only what the runner wrote (``RUN_DIR/run.json``, ``RUN_DIR/steps/<id with '--'>.<key16>/`` holding
``manifest.json`` when done or ``error.json`` when failed); it imports no stage. When ``run.json`` lists the
latest plan, only the directories it names are read: a spec edited between runs leaves its earlier steps'
directories behind (a cache for going back), and a step id with two keys must not mix the two.
Step ids follow the DAG:

- ``eval/general`` θ_G; ``eval/{rt,cft,cft_replay}/SKILL/SIZE/seedN``;
- ``eval/ptm/MERGE/SKILL/SIZE/seedN/wΩ``; ``eval/multi/MERGE/A+B[+...]/RULE``;
- ``eval-validation/...``: the same on validation data (kept, marked ``split="validation"``).

Cost of the model behind a row (θ_G's own training is shared by every arm and counted in none of them):

- rt / cft / cft_replay: the cost of that training step;
- a merge (ptm, multi-skill, or any arm's): the cost of every trained model it reads but θ_G (θ_D, θ_CFT
  for WiSE-FT; every θ_D of a multi-skill merge) plus the merge's wall time (merging adds no FLOPs to speak
  of: one pass of additions);
- any other arm's training: the cost of that training step.

Blocked steps (a dependency failed) write nothing; the report names the failed step instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skillmerge.errors import UsageError

RUN_FILE, STEPS_DIR, EVAL_DIR = "run.json", "steps", "eval"
SCORE_KEYS = ("general", "science", "safety", "exaggerated_refusal", "coding")
_SIZE = re.compile(r"(cap|pct)([0-9.eE+-]+)")


@dataclass
class Cost:
    """Training cost of one model: optimizer steps, real tokens, FLOPs, wall seconds (training + merge)."""

    optimizer_steps: int = 0
    tokens: int = 0
    flops: float = 0.0
    wall_seconds: float = 0.0
    merge_seconds: float = 0.0
    from_steps: list[str] = field(default_factory=list)

    def plus(self, other: Cost) -> Cost:
        return Cost(
            self.optimizer_steps + other.optimizer_steps,
            self.tokens + other.tokens,
            self.flops + other.flops,
            self.wall_seconds + other.wall_seconds,
            self.merge_seconds + other.merge_seconds,
            self.from_steps + other.from_steps,
        )


@dataclass
class ItemScores:
    """One suite's per-item scores of one evaluation (``ids``: a digest of the item ids, so two models'
    scores pair up only when they were scored on the same items, in the same order)."""

    ids: str
    scores: list[float]


@dataclass
class EvalRow:
    """One evaluated model. ``method``: general, rt, cft, cft_replay, ``ptm:<merge>`` or multi_skill."""

    id: str
    method: str
    split: str
    skill: str | None = None
    skills: list[str] = field(default_factory=list)
    size: str | None = None  # the DAG's label: cap100 / pct50
    size_value: float | None = None
    seed: int | None = None
    omega: float | None = None
    merge: str | None = None
    rule: str | None = None
    scores: dict[str, float | None] = field(default_factory=dict)
    cost: Cost | None = None
    # Per-item scores behind each score, by suite (:mod:`skillmerge.report.bootstrap`), and how many
    # components (suites or tasks) each score averages: a score is resampled only when all of them have items.
    items: dict[str, dict[str, ItemScores]] = field(default_factory=dict)
    components: dict[str, int] = field(default_factory=dict)
    # Refusal measured without the judge (suites run with refusal_probability / separation): the AUROC of
    # p(refusal) on harmful vs safe validation prompts, its means, and each set's rate by p(refusal) ≥ 0.5.
    refusal_measures: dict[str, float] = field(default_factory=dict)

    @property
    def family(self) -> str:
        """``ptm`` for every merge method, else the method itself."""
        return self.method.split(":")[0]

    def score(self, name: str) -> float | None:
        value = self.scores.get(name)
        return None if value is None else float(value)


@dataclass
class TrainRow:
    """One finished training step: ``recipe`` general / rt / cft / cft_replay / skill."""

    id: str
    recipe: str
    skill: str | None
    size: str | None
    seed: int | None
    cost: Cost


@dataclass
class Failure:
    id: str
    kind: str
    type: str
    message: str
    skill: str | None
    family: str | None


@dataclass
class Results:
    """Everything the report shows; ``skill_scores`` maps each skill to the score that measures it."""

    run: dict[str, Any]
    evals: list[EvalRow]
    training: list[TrainRow]
    failures: list[Failure]
    skill_scores: dict[str, str]
    # Per multi-skill merge: {"id", "merge", "rule", "skills", "groups", "pairs", "norms"} — the per-layer
    # cosine and sign-conflict rate of its task vectors (skillmerge.merge.overlap), when its step recorded it.
    overlaps: list[dict[str, Any]] = field(default_factory=list)

    def test_rows(self) -> list[EvalRow]:
        return [r for r in self.evals if r.split == "test"]

    def general(self) -> EvalRow | None:
        return next((r for r in self.test_rows() if r.method == "general"), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Results:
        def cost(value: dict[str, Any] | None) -> Cost | None:
            return None if value is None else Cost(**value)

        def items(value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, ItemScores]]:
            return {
                score: {suite: ItemScores(**entry) for suite, entry in suites.items()}
                for score, suites in (value or {}).items()
            }

        evals = [
            EvalRow(**{**row, "cost": cost(row["cost"]), "items": items(row.get("items"))})
            for row in data["evals"]
        ]
        training = [TrainRow(**{**row, "cost": Cost(**row["cost"])}) for row in data["training"]]
        failures = [Failure(**row) for row in data["failures"]]
        overlaps = list(data.get("overlaps") or [])
        return cls(data["run"], evals, training, failures, dict(data["skill_scores"]), overlaps)


def collect(run_dir: str | Path, skill_scores: dict[str, str] | None = None) -> Results:
    """Read every step directory of ``run_dir``; see the module docstring for ids and costs.

    ``skill_scores`` names each skill's score; otherwise ``run.json``'s ``skill_scores``, else the skill's
    own name when it is a score (``safety``), else the one score besides general and exaggerated refusal
    that the skill's evaluations report, else ``general``.
    """
    run_dir = Path(run_dir)
    run_file = run_dir / RUN_FILE
    if not run_file.is_file():
        raise UsageError(f"{run_dir}: not a skillmerge run directory (no {RUN_FILE})")
    run = _read_json(run_file)
    manifests: dict[str, dict[str, Any]] = {}
    failures: list[Failure] = []
    steps = run_dir / STEPS_DIR
    folders = (
        sorted(p for p in steps.iterdir() if p.is_dir() and not p.name.startswith("."))
        if steps.is_dir()
        else []
    )
    plan = run.get("plan")
    if isinstance(plan, dict):  # the latest plan's directories only: others are an edited spec's cache
        planned = set(plan.values())
        folders = [f for f in folders if f.name in planned]
    for folder in folders:
        if (folder / "manifest.json").is_file():
            manifest = _read_json(folder / "manifest.json")
            manifest["_dir"] = str(folder)
            manifests[manifest["id"]] = manifest
        elif (folder / "error.json").is_file():
            error = _read_json(folder / "error.json")
            step_id = str(error.get("id") or folder.name.rsplit(".", 1)[0].replace("--", "/"))
            skill, family = _skill_and_family(step_id)
            failures.append(
                Failure(
                    step_id,
                    step_id.split("/")[0],
                    str(error.get("type", "Error")),
                    str(error.get("message", "")).splitlines()[0] if error.get("message") else "",
                    skill,
                    family,
                )
            )
    training = [_train_row(m) for m in manifests.values() if m["kind"] == "train"]
    evals = [_eval_row(m, manifests) for m in manifests.values() if m["kind"] == "eval"]
    scores = _skill_scores(evals, skill_scores or run.get("skill_scores") or {})
    overlaps = [
        _overlap(m) for m in manifests.values() if m["kind"] == "merge" and "overlap" in m.get("result", {})
    ]
    return Results(run, evals, training, failures, scores, overlaps)


def _overlap(manifest: dict[str, Any]) -> dict[str, Any]:
    """A multi-skill merge's task-vector overlap with the merge it belongs to."""
    config = manifest.get("config", {})
    return {
        "id": manifest["id"],
        "merge": config.get("merge"),
        "rule": config.get("omega_rule"),
        "skills": list(config.get("skills") or []),
        **manifest["result"]["overlap"],
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"{path}: cannot be read as JSON ({err})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return value


def _size(label: str | None) -> float | None:
    match = _SIZE.fullmatch(label or "")
    return float(match.group(2)) if match else None


def _seed(label: str) -> int | None:
    return int(label[4:]) if label.startswith("seed") and label[4:].isdigit() else None


def _skill_and_family(step_id: str) -> tuple[str | None, str | None]:
    """The skill and method family a step id belongs to (``train/skill/...`` is PTM's θ_D)."""
    parts = step_id.split("/")
    if len(parts) < 2:
        return None, None
    kind, rest = parts[0], parts[1:]
    if kind in ("eval", "eval-validation", "merge"):
        if rest[0] == "ptm" and len(rest) >= 3:
            return rest[2], "ptm"
        if rest[0] == "multi":
            return None, "multi_skill"
        if rest[0] == "general":
            return None, "general"
    if kind == "train" and rest[0] == "skill":
        return (rest[1] if len(rest) > 1 else None), "ptm"
    if kind == "train" and rest[0] == "general":
        return None, "general"
    if kind == "data":
        return (rest[0] if rest[0] != "general" else None), None
    return (rest[1] if len(rest) > 1 else None), rest[0]


def _train_cost(manifest: dict[str, Any]) -> Cost:
    raw = (manifest.get("result") or {}).get("cost")
    if raw is None:  # older runs: the cost sits in the trained model's own manifest
        model_manifest = Path(manifest["_dir"]) / "model" / "manifest.json"
        raw = _read_json(model_manifest).get("cost", {}) if model_manifest.is_file() else {}
    return Cost(
        int(raw.get("optimizer_steps", 0)),
        int(raw.get("tokens", 0)),
        float(raw.get("flops", 0.0)),
        float(raw.get("wall_seconds", 0.0)),
        0.0,
        [manifest["id"]],
    )


def _train_row(manifest: dict[str, Any]) -> TrainRow:
    parts = manifest["id"].split("/")
    recipe = str(manifest.get("config", {}).get("recipe") or parts[1])
    skill = parts[2] if len(parts) > 2 else None
    size = parts[3] if len(parts) > 3 else None
    seed = _seed(parts[4]) if len(parts) > 4 else None
    return TrainRow(manifest["id"], recipe, skill, size, seed, _train_cost(manifest))


def _model_cost(model_id: str | None, manifests: dict[str, dict[str, Any]]) -> Cost | None:
    """The cost rule of the module docstring; ``None`` when a step it needs has no manifest."""
    if model_id is None:
        return None
    model = manifests.get(model_id)
    if model is None:
        return None
    if model["kind"] == "train":
        return _train_cost(model)
    if model["kind"] != "merge":
        return None
    total = Cost(merge_seconds=float(model.get("seconds", 0.0)), from_steps=[model_id])
    total.wall_seconds = total.merge_seconds
    for dep in model.get("deps", []):
        # θ_D (or θ_CFT behind a WiSE-FT merge); train/general (θ_G) is shared and not counted.
        if dep.startswith("train/") and dep != "train/general":
            if dep not in manifests:
                return None
            total = total.plus(_train_cost(manifests[dep]))
    return total


def _eval_row(manifest: dict[str, Any], manifests: dict[str, dict[str, Any]]) -> EvalRow:
    step_id = manifest["id"]
    kind, *parts = step_id.split("/")
    split = "validation" if kind == "eval-validation" else "test"
    raw_scores = (manifest.get("result") or {}).get("scores") or {}
    scores = {k: (None if raw_scores.get(k) is None else float(raw_scores[k])) for k in SCORE_KEYS}
    deps = manifest.get("deps") or []
    row = EvalRow(
        step_id, parts[0], split, scores=scores, cost=_model_cost(deps[0] if deps else None, manifests)
    )
    row.items, row.components = _item_scores(Path(manifest["_dir"]) / EVAL_DIR)
    row.refusal_measures = _refusal_measures(Path(manifest["_dir"]) / EVAL_DIR)
    if parts[0] == "ptm":  # ptm/MERGE/SKILL/SIZE/seedN/wΩ
        merge_cfg = manifests.get(deps[0], {}).get("config", {}) if deps else {}
        row.method, row.merge, row.skill, row.size = f"ptm:{parts[1]}", parts[1], parts[2], parts[3]
        row.seed = _seed(parts[4])
        row.omega = float(merge_cfg.get("omega", parts[5].removeprefix("w")))
    elif parts[0] == "multi":  # multi/MERGE/A+B/RULE
        row.method, row.merge, row.skills, row.rule = "multi_skill", parts[1], parts[2].split("+"), parts[3]
    elif parts[0] != "general":  # METHOD/SKILL/SIZE/seedN
        row.skill, row.size, row.seed = parts[1], parts[2], _seed(parts[3])
    if row.skill is not None:
        row.skills = [row.skill]
    row.size_value = _size(row.size)
    return row


def _item_scores(eval_dir: Path) -> tuple[dict[str, dict[str, ItemScores]], dict[str, int]]:
    """The per-item scores of an evaluation step's output and the component count of each score, read from
    ``scores.json`` and ``<suite>/items.jsonl``: a suite's items are kept when their mean is its component."""
    scores_file = eval_dir / "scores.json"
    if not scores_file.is_file():
        return {}, {}
    components = _read_json(scores_file).get("components") or {}
    out: dict[str, dict[str, ItemScores]] = {}
    for score, parts in components.items():
        for suite, value in parts.items():
            items = _suite_items(eval_dir / suite / "items.jsonl")
            if items is not None and abs(sum(items.scores) / len(items.scores) - float(value)) <= 1e-6:
                out.setdefault(score, {})[suite] = items
    return out, {score: len(parts) for score, parts in components.items()}


REFUSAL_MEASURES = ("refusal_auroc", "p_refusal_harmful_mean", "p_refusal_safe_mean")
_BY_PROBABILITY = ("_refusal_by_probability", "_compliance_by_probability")


def _refusal_measures(eval_dir: Path) -> dict[str, float]:
    """The judge-free refusal metrics of every suite's ``summary.json`` (:data:`REFUSAL_MEASURES` and the
    per-set ``*_refusal_by_probability`` / ``*_compliance_by_probability`` rates, per-type ones left out)."""
    found: dict[str, float] = {}
    for summary in sorted(eval_dir.glob("*/summary.json")) if eval_dir.is_dir() else []:
        metrics = _read_json(summary).get("metrics") or {}
        for key, value in metrics.items():
            wanted = key in REFUSAL_MEASURES or ("/" not in key and key.endswith(_BY_PROBABILITY))
            if wanted and isinstance(value, int | float) and not isinstance(value, bool):
                found[key] = float(value)
    return found


def _suite_items(path: Path) -> ItemScores | None:
    if not path.is_file():
        return None
    ids, values = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            ids.append(str(item.get("id")))
            values.append(float(item["score"]))
        except (ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{path}:{number}: not an item with a numeric score ({err})") from None
    if not values:
        return None
    return ItemScores(hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16], values)


def _skill_scores(evals: list[EvalRow], given: dict[str, str]) -> dict[str, str]:
    names = sorted({s for r in evals for s in r.skills})
    chosen: dict[str, str] = {}
    for name in names:
        if name in given:
            chosen[name] = given[name]
        elif name in SCORE_KEYS:
            chosen[name] = name
        else:
            reported = {
                k
                for r in evals
                if r.skill == name
                for k, v in r.scores.items()
                if v is not None and k not in ("general", "exaggerated_refusal")
            }
            chosen[name] = reported.pop() if len(reported) == 1 else "general"
    return chosen
