"""What each kind of step does: the symbolic step config of :mod:`skillmerge.experiment.dag` → real calls.

Every function has the form ``execute(step, ctx, out) -> result`` where ``out`` is the step's (temporary,
empty) directory and ``result`` goes into the step's ``manifest.json``. Outputs inside a step directory:

- data:  ``data.jsonl`` (the subset), result ``{"examples": n}``;
- train: ``model/`` (``skillmerge.train.run`` in-process, or ``accelerate launch ... -m skillmerge train``
  with ``train.yaml`` and ``launch.log`` beside it when the spec names a launcher), result: loss, steps, cost;
- merge: ``model/`` (``skillmerge.merge.run``), result: the merge recipe and the ω used;
- eval:  ``eval/`` (``skillmerge.evaluate.run``), result: the paper's aggregate scores.

PTM merges are ``θ = θ_G + ω·τ_D`` with ``τ_D = θ_D − θ_base`` (task arithmetic: θ_base, θ_G at 1, θ_D at ω).
Multi-skill merges are ``θ_G + Σ_k ω_k·τ_k`` with ω_k = |D_k|/|G| (heuristic) or each skill's validation pick.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillmerge.errors import SkillmergeError, UsageError
from skillmerge.experiment.dag import INPUT_REF, Step
from skillmerge.experiment.spec import DEFAULT_MERGE_PARAMETERS, ExperimentSpec, Launcher
from skillmerge.experiment.status import step_dir

MODEL_DIR, DATA_FILE, EVAL_DIR, LAUNCH_LOG = "model", "data.jsonl", "eval", "launch.log"


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

    def deps_of_kind(self, step: Step, kind: str) -> list[Step]:
        return [self.steps[d] for d in step.deps if self.steps[d].kind == kind]

    def model_of(self, step: Step) -> str:
        """The model a step reads: its first train/merge dependency's output, else the given θ_G."""
        for dep in step.deps:
            if self.steps[dep].kind in ("train", "merge"):
                return str(self.output(dep) / MODEL_DIR)
        if "general_model" in step.inputs:
            return step.inputs["general_model"].path
        raise ValueError(f"step {step.id} reads no model")  # a bug in the DAG

    def general_model(self, step: Step) -> str:
        """θ_G: the ``train/general`` dependency's output, or the spec's given directory."""
        if "train/general" in step.deps:
            return str(self.output("train/general") / MODEL_DIR)
        return step.inputs["general_model"].path

    def data_count(self, step_id: str) -> int:
        """Examples of a data step, or of the (first) skill data step behind a train step."""
        step = self.steps[step_id]
        if step.kind == "train":
            data = [d for d in self.deps_of_kind(step, "data") if d.config["what"] == "skill"]
            return self.data_count(data[0].id)
        return int(self.result(step_id)["examples"])


# ------------------------------------------------------------------------------------------------- data


def run_data(step: Step, ctx: StepContext, out: Path) -> dict[str, Any]:
    """The general mix (all files concatenated) or one nested subset of a skill's training data."""
    from skillmerge.data.records import write_jsonl
    from skillmerge.data.sources import load_records
    from skillmerge.data.subsample import nested_caps, nested_percentages

    records = [r for ref in step.inputs.values() for r in load_records(ref.path)]
    config = step.config
    # One size at a time: the subsample draws each task's order from (seed, task) alone, so the sample for
    # a size is the same prefix whichever other sizes the spec lists (nested across steps).
    if "caps" in config:
        records = nested_caps(records, [int(config["caps"])], seed=config["seed"])[int(config["caps"])]
    elif "percentages" in config:
        pct = config["percentages"]
        records = nested_percentages(records, [pct], seed=config["seed"])[pct]
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


def run_train(step: Step, ctx: StepContext, out: Path) -> dict[str, Any]:
    """SFT from θ_base (general, rt, skill) or θ_G (cft, cft_replay) on the data of the step's data deps."""
    from skillmerge.train import build_train_config
    from skillmerge.train import run as train

    if "same_as" in step.config:
        return _link_model(ctx, step.config["same_as"], out)
    recipe = step.config["recipe"]
    data = {d.config["what"]: ctx.output(d.id) / DATA_FILE for d in ctx.deps_of_kind(step, "data")}
    files = [data["general"]] if recipe in ("general", "rt") else []
    if recipe in ("rt", "cft", "skill", "cft_replay"):
        files.append(data["skill"])
    if recipe == "cft_replay":
        files.append(_replay_file(data["general"], ctx.data_count(_skill_data(ctx, step)), step, out))
    model = ctx.general_model(step) if recipe in ("cft", "cft_replay") else step.inputs["base"].path
    fields = unflatten(step.config["train"])
    fields["data"] = {**fields.get("data", {}), "files": [str(f) for f in files]}
    fields.update(model=model, out=str(out / MODEL_DIR), seed=step.config["seed"], progress=False)
    config = build_train_config(fields, where=step.id)
    if ctx.spec.launcher.accelerate_config is not None:
        return launch_train(fields, ctx.spec.launcher, out)
    result = train(config)
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


def launch_command(config_file: Path, launcher: Launcher, port: int) -> list[str]:
    """``python -m accelerate.commands.launch --config_file C [--num_processes N] --main_process_port P
    -m skillmerge train CONFIG.yaml`` (a free port each time, so concurrent runs do not collide)."""
    if launcher.accelerate_config is None:
        raise ValueError("launch_command needs an accelerate config")  # callers check first
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        launcher.accelerate_config,
    ]
    if launcher.num_processes is not None:
        command += ["--num_processes", str(launcher.num_processes)]
    command += ["--main_process_port", str(port), "-m", "skillmerge", "train", str(config_file)]
    return command


def launch_train(fields: dict[str, Any], launcher: Launcher, out: Path) -> dict[str, Any]:
    """Train in ``accelerate launch`` child processes: the config goes to ``out/train.yaml``, the child's
    output to ``out/launch.log``; the result is read back from the trained model's ``manifest.json``."""
    import yaml

    config_file = out / "train.yaml"
    config_file.write_text(yaml.safe_dump(fields, sort_keys=True), encoding="utf-8")
    log = out / LAUNCH_LOG
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(
            launch_command(config_file, launcher, _free_port()),
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise SkillmergeError(f"accelerate launch exited with code {done.returncode}: {' | '.join(tail)}")
    manifest = json.loads((Path(fields["out"]) / "manifest.json").read_text(encoding="utf-8"))
    return {
        "final_loss": manifest["final_loss"],
        "steps": manifest["cost"]["optimizer_steps"],
        "cost": manifest["cost"],
        "processes": manifest.get("processes"),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _skill_data(ctx: StepContext, step: Step) -> str:
    return next(d.id for d in ctx.deps_of_kind(step, "data") if d.config["what"] == "skill")


def _replay_file(general: Path, n_skill: int, step: Step, out: Path) -> Path:
    """As many general examples as skill ones (all of them when the mix is smaller), drawn with the seed."""
    from skillmerge.data.records import read_jsonl, write_jsonl

    records, _ = read_jsonl(general)
    rng = random.Random(step.config["seed"])
    chosen = rng.sample(records, min(n_skill, len(records)))
    path = out / "replay-general.jsonl"
    write_jsonl(path, chosen)
    return path


# ------------------------------------------------------------------------------------------------ merge


def merge_recipe(
    method: str,
    base: str,
    general: str,
    skills: list[str],
    omegas: list[float],
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The merge config (dict form) of ``θ_G + Σ_k ω_k·τ_k`` for ``method``.

    task_arithmetic / ties / dare_ties: θ_base as base, θ_G at weight 1, θ_D_k at ω_k;
    linear: ``(θ_G + Σ ω_k θ_D_k) / (1 + Σ ω_k)``; wise_ft: ``θ_G + ω·(θ_D − θ_G)`` (one skill only).
    ``parameters``: the method's parameters (default: :data:`DEFAULT_MERGE_PARAMETERS`).
    """
    params = dict(DEFAULT_MERGE_PARAMETERS[method] if parameters is None else parameters)
    if method == "wise_ft":
        if len(skills) != 1:
            raise UsageError(f"merge method wise_ft interpolates two models; got {len(skills)} skills")
        wise: dict[str, Any] = {
            "method": method,
            "base_model": general,
            "models": [{"model": skills[0], "weight": omegas[0]}],
        }
        if params:
            wise["parameters"] = params
        return wise
    models = [{"model": general, "weight": 1.0}]
    models += [{"model": path, "weight": omega} for path, omega in zip(skills, omegas, strict=True)]
    recipe: dict[str, Any] = {"method": method, "models": models, "parameters": params}
    if method != "linear":
        recipe["base_model"] = base
    return recipe


def run_merge(step: Step, ctx: StepContext, out: Path) -> dict[str, Any]:
    """A PTM merge at the step's ω, or a multi-skill merge with ω_k from the heuristic or validation pick."""
    from skillmerge.merge import run as merge
    from skillmerge.merge.config import config_from_dict

    config = step.config
    trained = [ctx.steps[d] for d in step.deps if d != "train/general" and ctx.steps[d].kind == "train"]
    if "omega" in config:
        omegas = [float(config["omega"])]
    else:
        omegas = [_multi_omega(step, ctx, skill_model) for skill_model in trained]
    recipe = merge_recipe(
        config["merge"],
        step.inputs["base"].path,
        ctx.general_model(step),
        [str(ctx.output(s.id) / MODEL_DIR) for s in trained],
        omegas,
        config["parameters"],
    )
    result = merge(config_from_dict(recipe, step.id), out / MODEL_DIR, progress=False)
    return {"recipe": recipe, "omegas": omegas, "weights_fingerprint": result.weights_fingerprint}


def _multi_omega(step: Step, ctx: StepContext, skill_model: Step) -> float:
    """ω_k of one skill: ``|D_k| / |G|``, or the ω its PTM sweep picked on validation data."""
    from skillmerge.experiment.select import heuristic_omega, pick_omega

    skill = next(ctx.steps[d].config["skill"] for d in skill_model.deps if ctx.steps[d].kind == "data")
    if step.config["omega_rule"] == "heuristic":
        general = next(d for d in step.deps if ctx.steps[d].config.get("what") == "general")
        return heuristic_omega(ctx.data_count(skill_model.id), ctx.data_count(general))
    sweep: dict[float, tuple[float, float]] = {}
    baseline: float | None = None
    for dep in step.deps:
        dep_step = ctx.steps[dep]
        if dep_step.kind != "eval":
            continue
        scores = ctx.result(dep)["scores"]
        if dep_step.config.get("skill") is None:
            baseline = scores["general"]
            continue
        merged = ctx.steps[dep_step.deps[0]]
        # Only the sweep of the very θ_D this merge uses (the same skill's other sizes/seeds are deps too).
        if dep_step.config["skill"] == skill and skill_model.id in merged.deps:
            skill_score = float(ctx.result(dep)["chat"]["score"])  # F1 on the skill's validation chats
            sweep[float(merged.config["omega"])] = (skill_score, _score(scores, "general"))
    if baseline is None or not sweep:
        raise UsageError(f"step {step.id}: no validation results for skill {skill!r}")
    picked = pick_omega(sweep, baseline, step.config["epsilon"])
    if picked is None:
        eps = step.config["epsilon"]
        raise UsageError(
            f"step {step.id}: no ω keeps general ≥ (1 − {eps})·{baseline:.2f} for skill {skill!r}"
        )
    return picked


def _score(scores: dict[str, Any], name: str) -> float:
    value = scores.get(name)
    return float("nan") if value is None else float(value)


# ------------------------------------------------------------------------------------------------- eval


def run_eval(step: Step, ctx: StepContext, out: Path) -> dict[str, Any]:
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

    limit = step.config.get("limit")
    seed = ctx.spec.seeds[0] + (1 if step.config["split"] == "validation" else 0)
    suites = step.config["suites"]
    options = {k: _bind_inputs(v, step) for k, v in step.config.get("options", {}).items()}
    if "chat" in suites and "skill" in step.config:  # a validation step: the skill's own validation files
        data = [ref.path for role, ref in step.inputs.items() if role.startswith("data.")]
        options["chat"] = {**options.get("chat", {}), "path": data}
    # The spec's eval map says which score each suite counts towards (over the suite's own category).
    categories = {name: score for score, names in ctx.spec.eval.items() for name in names}
    result = evaluate(
        ctx.model_of(step),
        suites,
        out / EVAL_DIR,
        limit=limit,
        seed=seed,
        suite_options=options,
        categories=categories,
    )
    scores = {key: result["scores"].get(key) for key in SCORE_LABELS}
    record: dict[str, Any] = {"scores": scores, "limit": limit, "seed": seed}
    if "chat" in suites:
        record["chat"] = result["suites"]["chat"]
    return record


def _bind_inputs(value: Any, step: Step) -> Any:
    """Option values naming an input (``"@input:ROLE"``, see the DAG) replaced by that input's path."""
    if isinstance(value, str) and value.startswith(INPUT_REF):
        return step.inputs[value.removeprefix(INPUT_REF)].path
    if isinstance(value, list):
        return [_bind_inputs(v, step) for v in value]
    if isinstance(value, dict):
        return {k: _bind_inputs(v, step) for k, v in value.items()}
    return value


EXECUTORS: dict[str, Callable[[Step, StepContext, Path], dict[str, Any]]] = {
    "data": run_data,
    "train": run_train,
    "merge": run_merge,
    "eval": run_eval,
}
