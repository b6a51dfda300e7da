"""Plan-time cost: examples, tokens and FLOPs of each training step, per arm, and the ``--dry-run`` text.

Tokens ≈ examples × mean characters / 4 × epochs (no tokenizer at plan time), FLOPs ≈ 6·N·T with N from the
model's ``config.json`` (or :data:`HUB_PARAMS` for a ``hub:`` model, which a dry run never downloads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skillmerge.experiment.spec import ExperimentSpec, Skill
from skillmerge.experiment.step import KINDS, Step
from skillmerge.experiment.step_configs import DataConfig, TrainStepConfig

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


def add_estimates(spec: ExperimentSpec, steps: list[Step]) -> None:
    """Fill ``estimate`` of train steps: examples, tokens ≈ examples × mean length × epochs, FLOPs ≈ 6·N·T."""
    by_id = {s.id: s for s in steps}
    base_params = model_params(spec.models.base)
    general_params = model_params(spec.models.general) if spec.models.general else base_params
    general_stats = _data_stats(spec.data.general)
    skills = {s.name: s for s in spec.data.skills}
    for step in steps:
        config = step.config
        if not isinstance(config, TrainStepConfig):
            continue
        parts: list[tuple[float | None, float | None]] = []  # (examples, mean tokens per example)
        for data_id in config.data:
            data = by_id[data_id].config
            assert isinstance(data, DataConfig)
            if data.what == "general" or data.skill is None:
                parts.append(general_stats)
            else:
                skill = skills[data.skill]
                parts.append(_sized(_data_stats(skill.train), skill, data))
        if config.replay_from is not None and parts:  # as many general examples as skill ones
            parts.append((parts[0][0], general_stats[1]))
        examples = None if any(c is None for c, _ in parts) else sum(c or 0 for c, _ in parts)
        tokens = None
        if examples is not None and all(m is not None for _, m in parts):
            tokens = sum((c or 0) * (m or 0) for c, m in parts) * config.train.get("epochs", 1)
        params = base_params if config.start == "base" else general_params
        flops = 6.0 * params * tokens if params is not None and tokens is not None else None
        step.estimate = {"examples": examples, "tokens": tokens, "params": params, "flops": flops}


def _sized(stats: tuple[float | None, float | None], skill: Skill, data: DataConfig) -> tuple:
    count, mean = stats
    if count is None:
        return stats
    if data.percentages is not None:
        return (count * data.percentages / 100.0, mean)
    tasks = _task_counts(skill.train)
    return (sum(min(n, data.caps or 0) for n in tasks.values()) if tasks else None, mean)


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
    """The ``--dry-run`` plan: one line per step (id, key prefix, deps), estimated cost per train step and
    per arm (the trainings each arm uses; a shared one, such as θ_D, counts in each), then the totals."""
    lines = []
    total_tokens = total_flops = 0.0
    unknown = False
    for step in steps:
        line = f"{step.kind:<5} {step.id}  [{step.key[:12]}]"
        same_as = getattr(step.config, "same_as", None)
        if same_as:
            line += f"  = {same_as} (the same training, linked; not counted again)"
        elif step.kind == "train":
            est = step.estimate
            line += f"  examples≈{_num(est.get('examples'))} tokens≈{_num(est.get('tokens'))} "
            line += f"FLOPs≈{_num(est.get('flops'))}"
            if est.get("tokens") is None or est.get("flops") is None:
                unknown = True
            total_tokens += est.get("tokens") or 0
            total_flops += est.get("flops") or 0
        lines.append(line)
    lines += _arm_costs(steps)
    counts = {k: sum(s.kind == k for s in steps) for k in KINDS}
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    tail = " (some unknown)" if unknown else ""
    # Totals over nothing known are unknown, not zero (e.g. a plan over hub data only).
    tokens = _num(total_tokens if total_tokens or not unknown else None)
    flops = _num(total_flops if total_flops or not unknown else None)
    cost = f"training ≈ {tokens} tokens, {flops} FLOPs{tail}"
    lines.append(f"{len(steps)} steps ({summary}); {cost}")
    return "\n".join(lines)


def _arm_costs(steps: list[Step]) -> list[str]:
    """``arm NAME: N trainings ≈ T tokens, F FLOPs`` per arm that trains (linked trainings cost nothing)."""
    per_arm: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        if getattr(step.config, "same_as", None):
            continue
        for arm in step.used_by:
            per_arm.setdefault(arm, []).append(step.estimate)
    lines = []
    for arm, estimates in per_arm.items():
        tokens = [e.get("tokens") for e in estimates]
        flops = [e.get("flops") for e in estimates]
        total_tokens = None if None in tokens else sum(t or 0 for t in tokens)
        total_flops = None if None in flops else sum(f or 0 for f in flops)
        cost = f"{_num(total_tokens)} tokens, {_num(total_flops)} FLOPs"
        lines.append(f"arm {arm}: {len(estimates)} training(s) ≈ {cost}")
    return lines


def _num(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"{value:.3g}" if value >= 1e4 else f"{value:.0f}"
