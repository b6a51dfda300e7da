"""An experiment spec as a DAG of steps (data, train, merge, eval) with content-addressed cache keys.

A step's key is

    key = sha256( canonical_json({kind, config, inputs: {role: fingerprint}, deps: {step id: key}}) )

where ``canonical_json`` sorts keys and ``inputs`` are the fingerprints of files and models read from
outside the run (sha256 of data files, the weights fingerprint of a model directory). Paths are not part of
the key, contents are: moving a file keeps the keys, editing one skill's data changes exactly the keys of the
steps downstream of that skill. Steps come out in topological order (every dependency before its user).

Step ids name what a step makes, e.g. ``train/cft/safety/cap100/seed0``; its directory in a run is
``<id with '/' as '--'>.<key[:16]>``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from skillmerge.errors import UsageError
from skillmerge.experiment.spec import ExperimentSpec, Skill

KINDS = ("data", "train", "merge", "eval")
CHARS_PER_TOKEN = 4.0  # plan-time token estimate without a tokenizer (a common English rule of thumb)
# Parameter counts of hub models a spec may name, so an offline dry run can still estimate FLOPs for them
# (counted from each model's published config with :func:`model_params`' formula).
HUB_PARAMS: dict[str, int] = {
    "meta-llama/Llama-2-7b-hf": 6_738_415_616,
    "meta-llama/Llama-2-13b-hf": 13_015_864_320,
    "meta-llama/Meta-Llama-3-8B": 8_030_261_248,
    "meta-llama/Llama-3.1-8B": 8_030_261_248,
    "HuggingFaceTB/SmolLM2-135M": 134_515_008,
}


@dataclass(frozen=True)
class InputRef:
    """A file or model read from outside the run: where it is and what its content hashes to."""

    path: str
    fingerprint: str


@dataclass
class Step:
    """One unit of work; ``config`` is everything but the inputs and dependencies that defines its output."""

    id: str
    kind: str
    config: dict[str, Any]
    deps: tuple[str, ...] = ()
    inputs: dict[str, InputRef] = field(default_factory=dict)
    key: str = ""
    estimate: dict[str, Any] = field(default_factory=dict)

    @property
    def dirname(self) -> str:
        return f"{self.id.replace('/', '--')}.{self.key[:16]}"


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text whatever the key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def step_key(kind: str, config: dict[str, Any], inputs: dict[str, str], dep_keys: dict[str, str]) -> str:
    """sha256 of the step's kind, canonical config, input fingerprints and dependency keys."""
    payload = {"kind": kind, "config": config, "inputs": inputs, "deps": dep_keys}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def fingerprint_input(path: str, field_name: str) -> InputRef:
    """A data file's sha256, a model directory's weights fingerprint, or a ``hub:`` reference's own text.

    ``hub:ID[@REVISION]`` is fingerprinted by its text alone (nothing is downloaded at plan time): pin a
    revision for a key that changes exactly when the hub content does.
    """
    if path.startswith("hub:"):
        hub_id = path.removeprefix("hub:")
        if not hub_id or hub_id.startswith("@") or " " in hub_id:
            raise UsageError(f"{field_name}: {path!r} is not a hub reference (hub:OWNER/NAME[@REVISION])")
        return InputRef(path, "hub:" + hashlib.sha256(path.encode()).hexdigest())
    target = Path(path)
    if target.is_file():
        from skillmerge.models.fingerprint import file_fingerprint

        return InputRef(path, file_fingerprint(target))
    if target.is_dir():
        return InputRef(path, _model_fingerprint(target, field_name))
    raise UsageError(f"{field_name}: {path} does not exist")


def _model_fingerprint(model_dir: Path, field_name: str) -> str:
    # The weights fingerprint recorded at save time identifies the data; headers alone are the cheap fallback.
    from skillmerge.models.io import recorded_fingerprint

    fingerprint = recorded_fingerprint(model_dir)
    if fingerprint is None:
        raise UsageError(f"{field_name}: {model_dir} is not a model directory (no config.json + safetensors)")
    return fingerprint


class _Graph:
    """Steps in insertion order; a step's key is computed when it is added (its deps are already in)."""

    def __init__(self) -> None:
        self.steps: dict[str, Step] = {}
        self.base = InputRef("", "")

    def add(self, step: Step) -> str:
        if step.id in self.steps:
            return step.id
        for dep in step.deps:
            if dep not in self.steps:
                raise ValueError(f"step {step.id} depends on unknown step {dep}")  # a bug in expand
        inputs = {role: ref.fingerprint for role, ref in step.inputs.items()}
        step.key = step_key(step.kind, step.config, inputs, {d: self.steps[d].key for d in step.deps})
        self.steps[step.id] = step
        return step.id


def expand(spec: ExperimentSpec, eval_limit: int | None = None) -> list[Step]:
    """All steps of ``spec`` in topological order; inputs are fingerprinted (missing ones refused).

    ``eval_limit`` (the ``--eval-limit`` override, else the spec's ``eval.limit``) goes into every eval step's
    config, so runs with different limits have different keys and can share a run directory.
    """
    limit = eval_limit if eval_limit is not None else spec.eval_limit
    graph = _Graph()
    base = fingerprint_input(spec.models.base, "models.base")
    graph.base = base
    validate_general = ""
    seed0 = spec.seeds[0]

    general_data = graph.add(
        Step(
            "data/general",
            "data",
            {"what": "general", "seed": seed0},
            inputs=_files(spec.data.general, "data.general"),
        )
    )
    # θ_G: given, or trained once (with the first seed) from θ_base; it is the shared start of every arm.
    if spec.models.general is not None:
        general_model: str | None = None
        general_ref = fingerprint_input(spec.models.general, "models.general")
        general_inputs = {"general_model": general_ref}
    else:
        general_model = graph.add(
            Step(
                "train/general",
                "train",
                {"recipe": "general", "train": spec.train_fields("general"), "seed": seed0},
                deps=(general_data,),
                inputs={"base": base},
            )
        )
        general_inputs = {}

    suites = spec.suites()
    general_suites = spec.eval["general"]
    # θ_G given and identical to θ_base (no base model available: PTM becomes θ_G + ω·(θ_D − θ_G)).
    same_start = bool(general_inputs) and _same_model(general_inputs["general_model"], base)
    skill_fields_equal = spec.train_fields("skill") == spec.train_fields("cft")

    def from_general(
        step_id: str, kind: str, config: dict[str, Any], deps: tuple[str, ...], inputs: dict | None = None
    ) -> str:
        extra = (general_model,) if general_model else ()
        merged_inputs = {**general_inputs, **(inputs or {})}
        return graph.add(Step(step_id, kind, config, deps=extra + deps, inputs=merged_inputs))

    option_inputs = _option_files(spec, suites)

    def evaluate(model_step: str | None, label: str) -> str:
        deps = (model_step,) if model_step else ()
        inputs = ({} if model_step else dict(general_inputs)) | option_inputs
        config = _with_options(spec, {"split": "test", "suites": suites, "limit": limit})
        return graph.add(Step(f"eval/{label}", "eval", config, deps, inputs))

    evaluate(general_model, "general")
    if spec.needs_validation:
        validate_general = graph.add(
            Step(
                "eval-validation/general",
                "eval",
                _with_options(spec, {"split": "validation", "suites": general_suites, "limit": limit}),
                deps=(general_model,) if general_model else (),
                inputs=({} if general_model else dict(general_inputs)) | _option_files(spec, general_suites),
            )
        )

    skill_models: dict[str, str] = {}  # skill → θ_D of its largest size, first seed (for multi-skill merges)
    for skill in spec.data.skills:
        skill_inputs = _files(skill.train, f"data.skills.{skill.name}.train")
        val_inputs = _files(skill.validation, f"data.skills.{skill.name}.validation")
        for size in skill.sizes.values:
            label = f"{skill.name}/{skill.sizes.label(size)}"
            data = graph.add(
                Step(
                    f"data/{label}",
                    "data",
                    {"what": "skill", "skill": skill.name, skill.sizes.mode: size, "seed": seed0},
                    inputs=skill_inputs,
                )
            )
            for seed in spec.seeds:
                tag = f"{label}/seed{seed}"
                if "rt" in spec.methods:
                    rt = graph.add(
                        Step(
                            f"train/rt/{tag}",
                            "train",
                            {"recipe": "rt", "train": spec.train_fields("rt"), "seed": seed},
                            deps=(general_data, data),
                            inputs={"base": base},
                        )
                    )
                    evaluate(rt, f"rt/{tag}")
                if "cft" in spec.methods:
                    config = {"recipe": "cft", "train": spec.train_fields("cft"), "seed": seed}
                    evaluate(from_general(f"train/cft/{tag}", "train", config, (data,)), f"cft/{tag}")
                if "cft_replay" in spec.methods:
                    config = {
                        "recipe": "cft_replay",
                        "train": spec.train_fields("cft_replay"),
                        "replay": "as_many_general_as_skill",
                        "seed": seed,
                    }
                    step = from_general(f"train/cft_replay/{tag}", "train", config, (data, general_data))
                    evaluate(step, f"cft_replay/{tag}")
                if "ptm" in spec.methods or "multi_skill" in spec.methods:
                    skill_config = {"recipe": "skill", "train": spec.train_fields("skill"), "seed": seed}
                    skill_deps: tuple[str, ...] = (data,)
                    cft_id = f"train/cft/{tag}"
                    if same_start and cft_id in graph.steps and skill_fields_equal:
                        # θ_base is θ_G and the recipes match: θ_D *is* the CFT model. Train it once; this
                        # step links the CFT weights (its cost record is the same training's).
                        skill_config["same_as"] = cft_id
                        skill_deps = (data, cft_id)
                    skill_model = graph.add(
                        Step(
                            f"train/skill/{tag}",
                            "train",
                            skill_config,
                            deps=skill_deps,
                            inputs={"base": base},
                        )
                    )
                    if seed == seed0:
                        skill_models[skill.name] = skill_model  # sizes ascend: the last one is the largest
                    if "ptm" in spec.methods:
                        _ptm_sweep(
                            spec, graph, skill, tag, skill_model, from_general, evaluate, val_inputs, limit
                        )

    if "multi_skill" in spec.methods:
        names = [s.name for s in spec.data.skills]
        groups = {tuple(names)} | set(combinations(names, 2))
        for group in sorted(groups, key=lambda g: (len(g), g)):
            for method in [m for m in spec.merge.methods if m != "wise_ft"]:  # wise_ft: one model only
                for rule in spec.selection.rules:
                    deps = [skill_models[n] for n in group] + [general_data]
                    if rule == "validation":  # ω_k comes from each skill's own PTM pick
                        deps += [s.id for s in graph.steps.values() if _is_ptm_validation(s, group, method)]
                        deps.append(validate_general)
                    config = {
                        "merge": method,
                        "skills": list(group),
                        "omega_rule": rule,
                        "epsilon": spec.selection.epsilon,
                        "parameters": spec.merge.parameters_for(method),
                    }
                    merged_id = f"merge/multi/{method}/{'+'.join(group)}/{rule}"
                    step = from_general(merged_id, "merge", config, tuple(deps), {"base": base})
                    evaluate(step, f"multi/{method}/{'+'.join(group)}/{rule}")

    steps = list(graph.steps.values())
    _add_estimates(spec, steps, graph.steps)
    return steps


FORMULAS = {
    "task_arithmetic": "theta_G + omega * (theta_D - theta_base)",
    "ties": "theta_G + omega * trim_elect_sign(theta_D - theta_base)",
    "dare_ties": "theta_G + omega * dare(theta_D - theta_base)",
    "linear": "(theta_G + omega * theta_D) / (1 + omega)",
    "wise_ft": "theta_G + omega * (theta_CFT - theta_G)",
}


def _ptm_sweep(
    spec: ExperimentSpec,
    graph: _Graph,
    skill: Skill,
    tag: str,
    skill_model: str,
    from_general: Callable[..., str],
    evaluate: Callable[[str | None, str], str],
    val_inputs: dict[str, InputRef],
    limit: int | None,
) -> None:
    """θ_G + ω·τ_D for every merge method and ω; each merged model is evaluated (and validated)."""
    for method in spec.merge.methods:
        for omega in spec.merge.omega_values():
            merged_id = f"merge/ptm/{method}/{tag}/w{omega:g}"
            # WiSE-FT interpolates θ_G towards the CFT model (θ_G finetuned on D), not towards θ_D.
            source = f"train/cft/{tag}" if method == "wise_ft" else skill_model
            formula = FORMULAS.get(method, FORMULAS["task_arithmetic"])
            config = {
                "merge": method,
                "omega": omega,
                "formula": formula,
                "parameters": spec.merge.parameters_for(method),
            }
            merged = from_general(merged_id, "merge", config, (source,), {"base": graph.base})
            evaluate(merged, merged_id.removeprefix("merge/"))
            if spec.needs_validation:
                graph.add(
                    Step(
                        f"eval-validation/{merged_id.removeprefix('merge/')}",
                        "eval",
                        _with_options(
                            spec,
                            {
                                "split": "validation",
                                "skill": skill.name,
                                # The skill is scored by the ``chat`` suite on its validation files
                                # (``inputs``); the general suites give the constraint's general score.
                                "suites": [*spec.eval["general"], "chat"],
                                "limit": limit,
                            },
                        ),
                        deps=(merged,),
                        inputs=val_inputs | _option_files(spec, spec.eval["general"]),
                    )
                )


def _is_ptm_validation(step: Step, group: tuple[str, ...], method: str) -> bool:
    return step.id.startswith(f"eval-validation/ptm/{method}/") and step.config.get("skill") in group


INPUT_REF = "@input:"  # an option value standing for an input's path (bound when the step runs)


def _with_options(spec: ExperimentSpec, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` plus the spec's options of its suites (no key when there are none: old keys stay valid).

    File and folder options appear as ``"@input:<role>"``: their content is in the key (through the step's
    inputs), their location is not, so moving a project keeps its keys.
    """
    options = {}
    for suite in config["suites"]:
        if suite not in spec.eval_options:
            continue
        opts = dict(spec.eval_options[suite])
        for role in spec.option_paths([suite]):
            key_path = role.removeprefix(f"eval.options.{suite}.")
            _set_path(opts, key_path.split("."), INPUT_REF + role)
        options[suite] = opts
    return {**config, "options": options} if options else config


def _set_path(tree: Any, keys: list[str], value: str) -> None:
    """Set ``tree[k0][k1]...`` (list indices as digits) to ``value``, copying containers on the way."""
    head, *rest = keys
    index: Any = int(head) if isinstance(tree, list) else head
    if not rest:
        tree[index] = value
        return
    child = tree[index]
    tree[index] = list(child) if isinstance(child, list) else dict(child)
    _set_path(tree[index], rest, value)


def _same_model(a: InputRef, b: InputRef) -> bool:
    """The same directory, or two copies with equal recorded weights fingerprints (a header-only
    fingerprint sees shapes, not values, so it never proves two models equal)."""
    if a.path.startswith("hub:") or b.path.startswith("hub:"):
        return a.path == b.path
    if Path(a.path).resolve() == Path(b.path).resolve():
        return True
    from skillmerge.models.fingerprint import header_fingerprint

    return a.fingerprint == b.fingerprint and a.fingerprint != header_fingerprint(Path(a.path))


def _option_files(spec: ExperimentSpec, suites: list[str]) -> dict[str, InputRef]:
    """Fingerprints of the file/folder suite options (a folder: sha256 over its files' names and hashes)."""
    refs = {}
    for role, path in spec.option_paths(suites).items():
        target = Path(path)
        if target.is_dir() and not (target / "config.json").exists():
            from skillmerge.models.fingerprint import file_fingerprint

            files = sorted(p for p in target.rglob("*") if p.is_file())
            listing = [[str(p.relative_to(target)), file_fingerprint(p)] for p in files]
            refs[role] = InputRef(path, hashlib.sha256(canonical_json(listing).encode()).hexdigest())
        else:
            refs[role] = fingerprint_input(path, role)
    return refs


def _files(paths: list[str], field_name: str) -> dict[str, InputRef]:
    return {f"{field_name}.{i}": fingerprint_input(p, f"{field_name}.{i}") for i, p in enumerate(paths)}


# ---------------------------------------------------------------------------------------------- estimates


def _add_estimates(spec: ExperimentSpec, steps: list[Step], by_id: dict[str, Step]) -> None:
    """Fill ``estimate`` of train steps: examples, tokens ≈ examples × mean length × epochs, FLOPs ≈ 6·N·T."""
    base_params = model_params(spec.models.base)
    general_params = model_params(spec.models.general) if spec.models.general else base_params
    general_stats = _data_stats(spec.data.general)
    skills = {s.name: s for s in spec.data.skills}
    for step in steps:
        if step.kind != "train":
            continue
        recipe = step.config["recipe"]
        parts: list[tuple[float | None, float | None]] = []  # (examples, mean tokens per example)
        for dep in step.deps:
            data = by_id[dep]
            if data.kind != "data":
                continue
            if data.config["what"] == "general":
                if recipe == "cft_replay":
                    continue  # replay takes as many general examples as skill ones: added below
                parts.append(general_stats)
            else:
                skill = skills[data.config["skill"]]
                parts.append(_sized(_skill_stats(skill), skill, data.config))
        if recipe == "cft_replay" and parts:
            count, _ = parts[0]
            parts.append((count, general_stats[1]))
        examples = None if any(c is None for c, _ in parts) else sum(c or 0 for c, _ in parts)
        tokens = None
        if examples is not None and all(m is not None for _, m in parts):
            tokens = sum((c or 0) * (m or 0) for c, m in parts) * step.config["train"].get("epochs", 1)
        params = base_params if recipe in ("general", "rt", "skill") else general_params
        flops = 6.0 * params * tokens if params is not None and tokens is not None else None
        step.estimate = {"examples": examples, "tokens": tokens, "params": params, "flops": flops}


def _sized(stats: tuple[float | None, float | None], skill: Skill, config: dict[str, Any]) -> tuple:
    count, mean = stats
    if count is None:
        return stats
    if "percentages" in config:
        return (count * config["percentages"] / 100.0, mean)
    tasks = _task_counts(skill.train)
    return (sum(min(n, config["caps"]) for n in tasks.values()) if tasks else None, mean)


def _data_stats(paths: list[str]) -> tuple[float | None, float | None]:
    """``(examples, mean tokens per example)`` of local JSONL chat files; ``None`` where not countable."""
    count, chars = 0, 0
    for path in paths:
        scanned = _scan_jsonl(path)
        if scanned is None:
            return (None, None)
        count += sum(scanned[0].values())
        chars += scanned[1]
    return (count, chars / CHARS_PER_TOKEN / count) if count else (0, None)


def _skill_stats(skill: Skill) -> tuple[float | None, float | None]:
    return _data_stats(skill.train)


def _task_counts(paths: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in paths:
        scanned = _scan_jsonl(path)
        if scanned is None:
            return {}
        for task, n in scanned[0].items():
            counts[task] = counts.get(task, 0) + n
    return counts


def _scan_jsonl(path: str) -> tuple[dict[str, int], int] | None:
    """Records per task (``source``, else the file) and total message characters; ``None`` if not JSONL."""
    if not path.endswith(".jsonl"):
        return None
    per_task: dict[str, int] = {}
    chars = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return None
            task = str(record.get("source") or path)
            per_task[task] = per_task.get(task, 0) + 1
            chars += sum(len(str(m.get("content", ""))) for m in record.get("messages", []))
    return per_task, chars


def model_params(model_dir: str | None) -> int | None:
    """Parameters of a Llama-style model from its ``config.json`` (``None`` when absent or not Llama-like).

    A ``hub:`` reference is looked up in :data:`HUB_PARAMS` (``None`` when not listed).

    ``N = V·d·(1 if tied else 2) + L·(2·d² + 2·d·h_kv·d_h + 3·d·f + 2·d) + d`` with d hidden size,
    f intermediate size, h_kv KV heads of size d_h = d / heads.
    """
    if model_dir is None:
        return None
    if model_dir.startswith("hub:"):  # known size or unknown: a dry run never downloads a config
        return HUB_PARAMS.get(model_dir.removeprefix("hub:").split("@", 1)[0])
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        d, f = int(config["hidden_size"]), int(config["intermediate_size"])
        layers, vocab, heads = (
            int(config["num_hidden_layers"]),
            int(config["vocab_size"]),
            int(config["num_attention_heads"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    kv = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or d // heads)
    attention = d * heads * head_dim * 2 + 2 * d * kv * head_dim
    per_layer = attention + 3 * d * f + 2 * d
    embeddings = vocab * d * (1 if config.get("tie_word_embeddings", False) else 2)
    return embeddings + layers * per_layer + d


# ---------------------------------------------------------------------------------------------- plan text


def plan_text(steps: list[Step]) -> str:
    """The ``--dry-run`` plan: one line per step (id, key prefix, deps) and estimated cost per train step."""
    lines = []
    total_tokens = total_flops = 0.0
    unknown = False
    for step in steps:
        line = f"{step.kind:<5} {step.id}  [{step.key[:12]}]"
        if step.kind == "train" and "same_as" in step.config:
            line += f"  = {step.config['same_as']} (the same training, linked; not counted again)"
        elif step.kind == "train":
            est = step.estimate
            line += f"  examples≈{_num(est.get('examples'))} tokens≈{_num(est.get('tokens'))} "
            line += f"FLOPs≈{_num(est.get('flops'))}"
            if est.get("tokens") is None or est.get("flops") is None:
                unknown = True
            total_tokens += est.get("tokens") or 0
            total_flops += est.get("flops") or 0
        lines.append(line)
    counts = {k: sum(s.kind == k for s in steps) for k in KINDS}
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    tail = " (some unknown)" if unknown else ""
    # Totals over nothing known are unknown, not zero (e.g. a plan over hub data only).
    tokens = _num(total_tokens if total_tokens or not unknown else None)
    flops = _num(total_flops if total_flops or not unknown else None)
    cost = f"training ≈ {tokens} tokens, {flops} FLOPs{tail}"
    lines.append(f"{len(steps)} steps ({summary}); {cost}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"{value:.3g}" if value >= 1e4 else f"{value:.0f}"
