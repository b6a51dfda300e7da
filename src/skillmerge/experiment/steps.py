"""What each kind of step does: a typed step config (:mod:`skillmerge.experiment.step_configs`) → real calls.

:func:`execute` dispatches on the config's type; every executor has the form ``run(step, config, ctx, out)
-> result`` where ``out`` is the step's (temporary, empty) directory and ``result`` goes into the step's
``manifest.json``. Outputs inside a step directory:

- data:  ``data.jsonl`` (the subset), result ``{"examples": n}``;
- train: ``model/`` (``skillmerge.train.run`` in-process, or ``accelerate launch ... -m skillmerge train``
  with ``train.yaml`` and ``launch.log`` beside it when the spec names a launcher), result: loss, steps, cost;
- merge: ``model/`` (``skillmerge.merge.run``), result: the merge recipe and the ω used (multi-skill merges
  also the task vectors' per-layer overlap);
- eval:  ``eval/`` (``skillmerge.evaluate.run``), result: the paper's aggregate scores.

PTM merges are ``θ = θ_G + ω·τ_D`` with ``τ_D = θ_D − θ_base`` (task arithmetic: θ_base, θ_G at 1, θ_D at ω).
Multi-skill merges are ``θ_G + Σ_k ω_k·τ_k`` with ω_k = |D_k|/|G| (heuristic) or each skill's validation pick.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from skillmerge.errors import UsageError
from skillmerge.experiment.launch import launch_train
from skillmerge.experiment.merge_recipe import merge_recipe
from skillmerge.experiment.planner import GENERAL_MODEL, INPUT_REF
from skillmerge.experiment.spec import ExperimentSpec
from skillmerge.experiment.status import step_dir
from skillmerge.experiment.step import Step
from skillmerge.experiment.step_configs import (
    DataConfig,
    EvalConfig,
    MultiMergeConfig,
    PtmMergeConfig,
    StepConfig,
    TrainStepConfig,
)

MODEL_DIR, DATA_FILE, EVAL_DIR = "model", "data.jsonl", "eval"
C = TypeVar("C", bound=StepConfig)


@dataclass
class StepContext:
    """What a step may read: the spec, every step by id and the run directory their outputs live in."""

    spec: ExperimentSpec
    steps: dict[str, Step]
    run_dir: Path

    def output(self, step_id: str) -> Path:
        return step_dir(self.run_dir, self.steps[step_id])

    def result(self, step_id: str) -> dict[str, Any]:
        manifest = json.loads((self.output(step_id) / "manifest.json").read_text(encoding="utf-8"))
        return manifest["result"]

    def model_of(self, step: Step) -> str:
        """The model a step reads: its first train/merge dependency's output, else the given θ_G."""
        for dep in step.deps:
            if self.steps[dep].kind in ("train", "merge"):
                return str(self.output(dep) / MODEL_DIR)
        if "general_model" in step.inputs:
            return step.inputs["general_model"].path
        raise ValueError(f"step {step.id} reads no model")  # a bug in an arm

    def general_model(self, step: Step) -> str:
        """θ_G: the trained θ_G step's output when the step depends on it, else the spec's given directory."""
        if GENERAL_MODEL in step.deps:
            return str(self.output(GENERAL_MODEL) / MODEL_DIR)
        return step.inputs["general_model"].path

    def data_count(self, step_id: str) -> int:
        """Examples of a data step, or of the skill data behind a train step."""
        config = self.steps[step_id].config
        if isinstance(config, TrainStepConfig):
            return self.data_count(self.skill_data(config))
        return int(self.result(step_id)["examples"])

    def skill_data(self, config: TrainStepConfig) -> str:
        """The (first) skill data step a training reads."""
        for data in config.data:
            data_config = self.steps[data].config
            if isinstance(data_config, DataConfig) and data_config.what == "skill":
                return data
        raise ValueError(f"a {config.recipe} training reads no skill data")  # a bug in an arm


def execute(step: Step, ctx: StepContext, out: Path) -> dict[str, Any]:
    """Run ``step`` into ``out`` with the executor of its config's type; the result for its manifest."""
    for config_type, run in EXECUTORS.items():
        if isinstance(step.config, config_type):
            return run(step, step.config, ctx, out)
    raise TypeError(f"step {step.id}: no executor for {type(step.config).__name__}")


# ------------------------------------------------------------------------------------------------- data


def run_data(step: Step, config: DataConfig, ctx: StepContext, out: Path) -> dict[str, Any]:
    """The general mix (all files concatenated) or one nested subset of a skill's training data."""
    from skillmerge.data.records import write_jsonl
    from skillmerge.data.sources import load_records
    from skillmerge.data.subsample import nested_caps, nested_percentages

    records = [r for ref in step.inputs.values() for r in load_records(ref.path)]
    # One size at a time: the subsample draws each task's order from (seed, task) alone, so the sample for
    # a size is the same prefix whichever other sizes the spec lists (nested across steps).
    if config.caps is not None:
        records = nested_caps(records, [config.caps], seed=config.seed)[config.caps]
    elif config.percentages is not None:
        records = nested_percentages(records, [config.percentages], seed=config.seed)[config.percentages]
    if not records:
        raise UsageError(f"step {step.id}: the data subset is empty")
    count = write_jsonl(out / DATA_FILE, records)
    return {"examples": count}


# ------------------------------------------------------------------------------------------------ train


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"data.max_len": 8}`` → ``{"data": {"max_len": 8}}`` (the inverse of the trajectory's flattening)."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def run_train(step: Step, config: TrainStepConfig, ctx: StepContext, out: Path) -> dict[str, Any]:
    """SFT of θ_base or θ_G (``config.start``) on the files of the config's data steps (+ the replay draw)."""
    from skillmerge.train import build_train_config
    from skillmerge.train import run as train

    if config.same_as is not None:
        return _link_model(ctx, config.same_as, out)
    files = [ctx.output(d) / DATA_FILE for d in config.data]
    if config.replay_from is not None:
        general = ctx.output(config.replay_from) / DATA_FILE
        files.append(_replay_file(general, ctx.data_count(ctx.skill_data(config)), config.seed, out))
    model = ctx.general_model(step) if config.start == "general" else step.inputs["base"].path
    fields = unflatten(config.train)
    fields["data"] = {**fields.get("data", {}), "files": [str(f) for f in files]}
    fields.update(model=model, out=str(out / MODEL_DIR), seed=config.seed, progress=False)
    built = build_train_config(fields, where=step.id)
    if ctx.spec.launcher.accelerate_config is not None:
        return launch_train(fields, ctx.spec.launcher, out)
    result = train(built)
    return {"final_loss": result.final_loss, "steps": result.steps, "cost": result.cost.to_dict()}


def _link_model(ctx: StepContext, source_id: str, out: Path) -> dict[str, Any]:
    """The model of ``source_id`` (an identical training) hard-linked into ``out`` (copied across devices)."""
    source = ctx.output(source_id) / MODEL_DIR
    target = out / MODEL_DIR
    target.mkdir(parents=True)
    for file in sorted(source.rglob("*")):
        dest = target / file.relative_to(source)
        if file.is_dir():
            dest.mkdir(exist_ok=True)
            continue
        try:
            os.link(file, dest)
        except OSError:
            shutil.copy2(file, dest)
    return {**ctx.result(source_id), "same_as": source_id}


def _replay_file(general: Path, n_skill: int, seed: int, out: Path) -> Path:
    """As many general examples as skill ones (all of them when the mix is smaller), drawn with the seed."""
    from skillmerge.data.records import read_jsonl, write_jsonl

    records, _ = read_jsonl(general)
    chosen = random.Random(seed).sample(records, min(n_skill, len(records)))
    path = out / "replay-general.jsonl"
    write_jsonl(path, chosen)
    return path


# ------------------------------------------------------------------------------------------------ merge


def run_ptm_merge(step: Step, config: PtmMergeConfig, ctx: StepContext, out: Path) -> dict[str, Any]:
    """θ_G merged with one model (θ_D, or the CFT model for WiSE-FT) at the config's ω."""
    return _merge(step, config.merge, [config.model], [config.omega], config.parameters, ctx, out)


def run_multi_merge(step: Step, config: MultiMergeConfig, ctx: StepContext, out: Path) -> dict[str, Any]:
    """θ_G + Σ_k ω_k·τ_k with each ω_k from the heuristic or the skill's validation pick.

    The result also holds ``overlap``: per-layer cosine and sign-conflict rate of every pair of the raw task
    vectors τ_k = θ_D,k − θ_base (:mod:`skillmerge.merge.overlap`; before any sparsification), the
    interference this merge has to resolve.
    """
    from skillmerge.merge.overlap import task_vector_overlap

    picks = [_multi_omega(step, config, ctx, model) for model in config.models]
    omegas = [omega for omega, _ in picks]
    result = _merge(step, config.merge, list(config.models), omegas, config.parameters, ctx, out)
    notes = [note for _, note in picks if note is not None]
    if notes:
        result["omega_notes"] = notes
    skill_models = {s: ctx.output(m) / MODEL_DIR for s, m in zip(config.skills, config.models, strict=True)}
    result["overlap"] = task_vector_overlap(step.inputs["base"].path, skill_models)
    return result


def _merge(
    step: Step,
    method: str,
    models: list[str],
    omegas: list[float],
    parameters: dict[str, Any],
    ctx: StepContext,
    out: Path,
) -> dict[str, Any]:
    from skillmerge.merge import run as merge
    from skillmerge.merge.config import config_from_dict

    recipe = _recipe(step, method, models, omegas, parameters, ctx)
    result = merge(config_from_dict(recipe, step.id), out / MODEL_DIR, progress=False)
    return {"recipe": recipe, "omegas": omegas, "weights_fingerprint": result.weights_fingerprint}


def _recipe(
    step: Step,
    method: str,
    models: list[str],
    omegas: list[float],
    parameters: dict[str, Any],
    ctx: StepContext,
) -> dict[str, Any]:
    general = ctx.general_model(step)
    vector_from = getattr(step.config, "vector_from", None)  # ptm_general: τ = θ_D^G − θ_G
    return merge_recipe(
        method,
        general if vector_from == "general" else step.inputs["base"].path,
        general,
        [str(ctx.output(m) / MODEL_DIR) for m in models],
        omegas,
        parameters,
    )


def merge_peak_bytes(step: Step, ctx: StepContext) -> int:
    """The merge engine's working-memory estimate for a merge step whose dependencies are finished.

    Read from the inputs' headers through the merge plan; ω does not change it, so every ω is taken as 1.
    """
    from skillmerge.merge import run as merge
    from skillmerge.merge.config import config_from_dict

    config = step.config
    if isinstance(config, PtmMergeConfig):
        models = [config.model]
    elif isinstance(config, MultiMergeConfig):
        models = list(config.models)
    else:
        raise TypeError(f"step {step.id}: not a merge step")
    recipe = _recipe(step, config.merge, models, [1.0] * len(models), config.parameters, ctx)
    planned = merge(config_from_dict(recipe, step.id), ctx.output(step.id) / MODEL_DIR, dry_run=True)
    return int(planned.plan["estimated_peak_bytes"])


def _multi_omega(
    step: Step, config: MultiMergeConfig, ctx: StepContext, model: str
) -> tuple[float, str | None]:
    """ω_k of one skill model and a note when it is a fallback: ``|D_k| / |G|``, or the ω its PTM sweep
    picked on validation data — or, when no swept ω keeps general ≥ (1 − ε)·θ_G, the one that keeps the
    most general score (the merge is still made; the note says the constraint was not met)."""
    from skillmerge.experiment.select import heuristic_omega, least_harm_omega, pick_omega

    skill = _config(ctx, ctx.skill_data(_config(ctx, model, TrainStepConfig)), DataConfig).skill
    if config.omega_rule == "heuristic":
        return heuristic_omega(ctx.data_count(model), ctx.data_count(config.general_data)), None
    sweep: dict[float, tuple[float, float]] = {}
    baseline: float | None = None
    if config.general_validation is not None:
        baseline = ctx.result(config.general_validation)["scores"]["general"]
    for validation in config.validations:
        merged_id = ctx.steps[validation].deps[0]
        merged = _config(ctx, merged_id, PtmMergeConfig)
        # Only the sweep of the very θ_D this merge uses (the same skill's other sizes/seeds are deps too).
        if merged.model == model:
            result = ctx.result(validation)
            skill_score = float(result["chat"]["score"])  # F1 on the skill's validation chats
            sweep[merged.omega] = (skill_score, _score(result["scores"], "general"))
    if baseline is None or not sweep:
        raise UsageError(f"step {step.id}: no validation results for skill {skill!r}")
    picked = pick_omega(sweep, baseline, config.epsilon)
    if picked is not None:
        return picked, None
    fallback = least_harm_omega(sweep)
    if fallback is None:
        raise UsageError(f"step {step.id}: no validation ω of skill {skill!r} has a general score")
    general = sweep[fallback][1]
    return fallback, (
        f"{skill}: no swept ω keeps general ≥ (1 − {config.epsilon})·{baseline:.2f}; took ω {fallback:g}, "
        f"the one that keeps the most (general {general:.2f})"
    )


def _config(ctx: StepContext, step_id: str, kind: type[C]) -> C:
    config = ctx.steps[step_id].config
    if not isinstance(config, kind):
        raise TypeError(f"step {step_id}: expected a {kind.__name__}, got {type(config).__name__}")
    return config


def _score(scores: dict[str, Any], name: str) -> float:
    value = scores.get(name)
    return float("nan") if value is None else float(value)


# ------------------------------------------------------------------------------------------------- eval


def run_eval(step: Step, config: EvalConfig, ctx: StepContext, out: Path) -> dict[str, Any]:
    """The step's suites on its model, at most ``limit`` items each.

    Test evaluations (``split: test``) run the registered suites on their own offline items, drawn with
    seed ``seeds[0]``. Validation evaluations (``split: validation``, seed ``seeds[0] + 1``) feed the pick
    of ω: θ_G's gives the baseline general score; a skill's merge candidate (config ``skill``) runs the
    general suites plus the ``chat`` suite on that skill's own validation files (the step's ``inputs``,
    fingerprinted into its key), which scores the reply to each record's last assistant turn by token F1.
    That chat score (result ``"chat"``) is the skill score :func:`_multi_omega` picks ω on, so the pick
    never sees the test items of the skill's score suites.
    """
    from skillmerge.evaluate import SCORE_LABELS
    from skillmerge.evaluate import run as evaluate

    seed = ctx.spec.seeds[0] + (1 if config.split == "validation" else 0)
    options = {k: _bind_inputs(v, step) for k, v in (config.options or {}).items()}
    if "chat" in config.suites and config.skill is not None:  # the skill's own validation files
        data = [ref.path for role, ref in step.inputs.items() if role.startswith("data.")]
        options["chat"] = {**options.get("chat", {}), "path": data}
    # The spec's eval map says which score each suite counts towards (over the suite's own category).
    categories = {name: score for score, names in ctx.spec.eval.items() for name in names}
    result = evaluate(
        ctx.model_of(step),
        config.suites,
        out / EVAL_DIR,
        limit=config.limit,
        seed=seed,
        suite_options=options,
        categories=categories,
        batch_size=ctx.spec.eval_batch_size,
    )
    scores = {key: result["scores"].get(key) for key in SCORE_LABELS}
    record: dict[str, Any] = {"scores": scores, "limit": config.limit, "seed": seed}
    if "chat" in config.suites:
        record["chat"] = result["suites"]["chat"]
    return record


def _bind_inputs(value: Any, step: Step) -> Any:
    """Option values naming an input (``"@input:ROLE"``, see the planner) replaced by that input's path."""
    if isinstance(value, str) and value.startswith(INPUT_REF):
        return step.inputs[value.removeprefix(INPUT_REF)].path
    if isinstance(value, list):
        return [_bind_inputs(v, step) for v in value]
    if isinstance(value, dict):
        return {k: _bind_inputs(v, step) for k, v in value.items()}
    return value


EXECUTORS: dict[type[StepConfig], Callable[..., dict[str, Any]]] = {
    DataConfig: run_data,
    TrainStepConfig: run_train,
    PtmMergeConfig: run_ptm_merge,
    MultiMergeConfig: run_multi_merge,
    EvalConfig: run_eval,
}
