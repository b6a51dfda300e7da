"""The shared state arms plan into: the steps so far, θ_base / θ_G / the general data, and step builders.

Arms call the builders (:meth:`Planner.train`, :meth:`Planner.merge`, :meth:`Planner.evaluate`,
:meth:`Planner.validate`, ...) instead of assembling inputs and dependencies themselves, so every arm reads
θ_G, θ_base and the evaluation options the same way. A step added twice (same id) is kept once: that is how
arms share θ_G, the data subsets and θ_D. A step's key is computed when it is added, after its deps.
"""

from __future__ import annotations

from dataclasses import dataclass

from skillmerge.experiment.inputs import file_inputs, fingerprint_input, option_inputs, same_model
from skillmerge.experiment.spec import ExperimentSpec, Skill
from skillmerge.experiment.step import InputRef, Step, step_key
from skillmerge.experiment.step_configs import (
    DataConfig,
    EvalConfig,
    MultiMergeConfig,
    PtmMergeConfig,
    StepConfig,
    TrainStepConfig,
)

GENERAL_DATA = "data/general"
GENERAL_MODEL = "train/general"  # θ_G's step when it is trained (none when the spec gives θ_G)
INPUT_REF = "@input:"  # an option value standing for an input's path (bound when the step runs)


@dataclass(frozen=True)
class Cell:
    """One skill at one data size and seed: the unit most arms plan one model for."""

    skill: Skill
    size: float
    seed: int

    @property
    def label(self) -> str:
        return f"{self.skill.name}/{self.skill.sizes.label(self.size)}"

    @property
    def tag(self) -> str:
        """``safety/cap100/seed0``: the part of step ids naming the cell."""
        return f"{self.label}/seed{self.seed}"


class Planner:
    """Steps in insertion order (a topological order) plus what every arm shares."""

    def __init__(self, spec: ExperimentSpec, eval_limit: int | None) -> None:
        self.spec = spec
        self.limit = eval_limit
        self.steps: dict[str, Step] = {}
        self.arm = ""  # the arm planning now: recorded on the training steps it asks for
        self.base = fingerprint_input(spec.models.base, "models.base")
        # θ_G given (an input) or trained by the general arm (the step GENERAL_MODEL).
        self.general_inputs: dict[str, InputRef] = {}
        if spec.models.general is not None:
            self.general_inputs = {"general_model": fingerprint_input(spec.models.general, "models.general")}
        self.general_model: str | None = None
        self.general_validation: str | None = None
        self.general_data = self.add(
            Step(
                GENERAL_DATA,
                DataConfig(what="general", seed=spec.seeds[0]),
                inputs=file_inputs(spec.data.general, "data.general"),
            )
        )

    # ------------------------------------------------------------------------------------------ basics

    def add(self, step: Step) -> str:
        """Add ``step`` (its dependencies must be in already) and return its id; a known id is kept once."""
        if step.id in self.steps:
            return step.id
        for dep in step.deps:
            if dep not in self.steps:
                raise ValueError(f"step {step.id} depends on unknown step {dep}")  # a bug in an arm
        inputs = {role: ref.fingerprint for role, ref in step.inputs.items()}
        deps = {d: self.steps[d].key for d in step.deps}
        step.key = step_key(step.kind, step.config.record(), inputs, deps)
        self.steps[step.id] = step
        return step.id

    def cells(self) -> list[Cell]:
        """Every (skill, size, seed) of the spec: skills in order, sizes ascending, then seeds."""
        return [
            Cell(skill, size, seed)
            for skill in self.spec.data.skills
            for size in skill.sizes.values
            for seed in self.spec.seeds
        ]

    @property
    def same_start(self) -> bool:
        """θ_G is given and is θ_base itself (no base model available: PTM is θ_G + ω·(θ_D − θ_G))."""
        given = self.general_inputs.get("general_model")
        return given is not None and same_model(given, self.base)

    def configs(self, kind: type[StepConfig]) -> list[Step]:
        """The steps so far whose config is a ``kind``, in insertion order."""
        return [s for s in self.steps.values() if isinstance(s.config, kind)]

    # ------------------------------------------------------------------------------------------ builders

    def skill_data(self, cell: Cell) -> str:
        """The nested subset of ``cell``'s skill data at its size (drawn with the first seed)."""
        skill = cell.skill
        size = {skill.sizes.mode: cell.size}  # caps: an int per task; percentages: a float
        return self.add(
            Step(
                f"data/{cell.label}",
                DataConfig(what="skill", skill=skill.name, seed=self.spec.seeds[0], **size),
                inputs=file_inputs(skill.train, f"data.skills.{skill.name}.train"),
            )
        )

    def train(self, step_id: str, config: TrainStepConfig, extra_deps: tuple[str, ...] = ()) -> str:
        """A training step from θ_base or θ_G (``config.start``) on ``config``'s data (+ ``extra_deps``)."""
        deps = config.data + ((config.replay_from,) if config.replay_from else ()) + extra_deps
        if config.start == "general":
            step = Step(step_id, config, self._general_deps() + deps, dict(self.general_inputs))
        else:
            step = Step(step_id, config, deps, {"base": self.base})
        added = self.add(step)
        if self.arm and self.arm not in self.steps[added].used_by:
            self.steps[added].used_by.append(self.arm)
        return added

    def merge(self, step_id: str, config: PtmMergeConfig | MultiMergeConfig, deps: tuple[str, ...]) -> str:
        """A merge into θ_G (θ_G's step or input, θ_base as ``base``)."""
        inputs = {**self.general_inputs, "base": self.base}
        return self.add(Step(step_id, config, self._general_deps() + deps, inputs))

    def merge_evaluated(self, label: str, config: PtmMergeConfig, source: str, skill: Skill) -> str:
        """``merge/<label>`` from ``source`` into θ_G, evaluated (``eval/<label>``) and, when the spec picks ω
        on validation data, validated for ``skill``; returns the merge's step id."""
        merged = self.merge(f"merge/{label}", config, (source,))
        self.evaluate(merged, label)
        if self.spec.needs_validation:
            self.validate(merged, label, skill)
        return merged

    def evaluate(self, model: str | None, label: str) -> str:
        """``eval/<label>``: every suite of the spec on the test split, on ``model`` (``None``: given θ_G)."""
        suites = self.spec.suites()
        config = EvalConfig(split="test", suites=suites, limit=self.limit, options=self.options_for(suites))
        return self._eval(f"eval/{label}", config, model, {})

    def validate(self, model: str | None, label: str, skill: Skill | None = None) -> str:
        """``eval-validation/<label>``: the general suites on the validation split (the ω constraint), and
        with ``skill`` also that skill's own validation chats (the ``chat`` suite: the skill score)."""
        general = self.spec.eval["general"]
        suites = [*general, "chat"] if skill is not None else list(general)
        extra = {}
        if skill is not None:
            extra = file_inputs(skill.validation, f"data.skills.{skill.name}.validation")
        config = EvalConfig(
            split="validation",
            skill=skill.name if skill is not None else None,
            suites=suites,
            limit=self.limit,
            options=self.options_for(suites),
        )
        return self._eval(f"eval-validation/{label}", config, model, extra, option_suites=general)

    def options_for(self, suites: list[str]) -> dict[str, dict] | None:
        """The spec's options of ``suites`` (``None`` when there are none: old keys stay valid).

        File and folder options appear as ``"@input:<role>"``: their content is in the key (through the
        step's inputs), their location is not, so moving a project keeps its keys.
        """
        options = {}
        for suite in suites:
            if suite not in self.spec.eval_options:
                continue
            opts = dict(self.spec.eval_options[suite])
            for role in self.spec.option_paths([suite]):
                key_path = role.removeprefix(f"eval.options.{suite}.")
                _set_path(opts, key_path.split("."), INPUT_REF + role)
            options[suite] = opts
        return options or None

    def _eval(
        self,
        step_id: str,
        config: EvalConfig,
        model: str | None,
        extra: dict[str, InputRef],
        option_suites: list[str] | None = None,
    ) -> str:
        deps = (model,) if model else ()
        given = {} if model else dict(self.general_inputs)
        options = option_inputs(self.spec.option_paths(option_suites or config.suites))
        return self.add(Step(step_id, config, deps, given | extra | options))

    def _general_deps(self) -> tuple[str, ...]:
        return (self.general_model,) if self.general_model else ()


def _set_path(tree: dict | list, keys: list[str], value: str) -> None:
    """Set ``tree[k0][k1]...`` (list indices as digits) to ``value``, copying containers on the way."""
    head, *rest = keys
    index = int(head) if isinstance(tree, list) else head
    if not rest:
        tree[index] = value  # type: ignore[index]
        return
    child = tree[index]  # type: ignore[index]
    tree[index] = list(child) if isinstance(child, list) else dict(child)  # type: ignore[index]
    _set_path(tree[index], rest, value)  # type: ignore[index]
