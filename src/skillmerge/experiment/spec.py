"""The experiment spec: one YAML file naming the models, data, methods, ω selection, recipes and suites.

::

    name: demo
    seeds: [0]
    models:
      base: models/base                 # θ_base, an HF directory
      general: null                     # θ_G: an HF directory, or null: trained from θ_base on data.general
    data:
      general: [data/general.jsonl]     # the general mix (chat files)
      skills:
        - name: safety
          train: [data/safety.jsonl]
          validation: [data/safety-val.jsonl]
          sizes: {caps: [100, 500]}       # per-task caps, or {percentages: [50, 100]}; nested
          score: safety                   # which eval score is this skill's score
    methods: [rt, cft, cft_replay, ptm, multi_skill]
    merge:
      methods: [task_arithmetic]
      omegas: {start: 0.1, stop: 1.0, step: 0.1}     # or an explicit list
      parameters: {ties: {density: 0.5}}             # per method, over DEFAULT_MERGE_PARAMETERS
    selection: {rules: [heuristic, validation], epsilon: 0.05}
    training:
      default: {preset: cpu-small}        # under every kind below
      skill: {lr: 2.0e-4}                 # kinds: general, rt, cft, cft_replay, skill (θ_D for PTM)
      launcher: {accelerate_config: ../configs/accelerate/ddp.yaml, num_processes: 4}   # default: in-process
    eval:
      limit: 200                          # at most this many items per suite (in every eval step's key)
      batch_size: 16                      # prompts per forward pass (in no key)
      options:                            # per-suite options (paths are relative to the spec file)
        safety: {max_new_tokens: 48, paths: {donotanswer: data/dna-test}}
      general: [general]
      safety: [safety]
      exaggerated_refusal: [xstest]

``training.launcher``, ``eval.limit`` and ``eval.options`` are lifted out of their sections into
:attr:`ExperimentSpec.launcher`, :attr:`ExperimentSpec.eval_limit` and
:attr:`ExperimentSpec.eval_options` (the other keys of those sections are model kinds and scores). Option
names are checked against the suite's factory when the spec loads (every suite also takes ``limit``: its
own cap, ``null`` for all its items, over ``eval.limit``); values under ``path``, ``paths``, ``problems``,
``mc_path`` or ``separation`` are files or folders, resolved against the spec's directory and fingerprinted
into the eval steps' keys. How a
training step is launched is not part of any cache key: the recipe fixes the effective batch, so one process
and N processes train the same trajectory (up to float summation order).

Relative paths are resolved against the spec file's directory (``hub:`` sources are kept as written).
:func:`load_spec` validates everything that needs no file content; missing inputs are refused when the DAG
fingerprints them (:func:`skillmerge.experiment.dag.expand`), still before any work.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from skillmerge.config_yaml import first_validation_error, read_yaml_mapping
from skillmerge.errors import UsageError
from skillmerge.experiment.arms import Arm, arm_names, planned_arms, train_kinds
from skillmerge.experiment.merge_recipe import DEFAULT_MERGE_PARAMETERS, MERGE_METHODS, merge_recipe

OMEGA_MIN, OMEGA_MAX = 0.0, 2.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _known_arm(name: str) -> str:
    """An arm name of the registry (:mod:`skillmerge.experiment.arms`), refused like a literal otherwise."""
    known = arm_names()
    if name not in known:
        expected = ", ".join(repr(n) for n in known[:-1]) + f" or {known[-1]!r}"
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
    return name


ArmName = Annotated[str, AfterValidator(_known_arm)]


class Models(BaseModel):
    """θ_base, and θ_G given as a directory or (``None``) trained from θ_base on the general mix."""

    model_config = ConfigDict(extra="forbid")

    base: str
    general: str | None = None


class Sizes(BaseModel):
    """The data sizes to try, nested (every smaller sample ⊆ every larger one): caps or percentages."""

    model_config = ConfigDict(extra="forbid")

    caps: list[int] | None = None
    percentages: list[float] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Sizes:
        if (self.caps is None) == (self.percentages is None):
            raise ValueError("give exactly one of caps (per-task) or percentages")
        values = self.values
        if not values:
            raise ValueError("at least one size is needed")
        if len(set(values)) != len(values):
            raise ValueError(f"sizes repeat: {values}")
        if self.caps is not None and any(c < 1 for c in self.caps):
            raise ValueError(f"caps must be positive integers, got {self.caps}")
        if self.percentages is not None and any(not 0 < p <= 100 for p in self.percentages):
            raise ValueError(f"percentages must be in (0, 100], got {self.percentages}")
        return self

    @property
    def mode(self) -> Literal["caps", "percentages"]:
        return "caps" if self.caps is not None else "percentages"

    @property
    def values(self) -> list[float]:
        return sorted(self.caps if self.caps is not None else self.percentages or [])

    def label(self, value: float) -> str:
        """``cap100`` / ``pct50``: the size's name in step ids."""
        number = f"{value:g}"
        return f"cap{number}" if self.mode == "caps" else f"pct{number}"


class Skill(BaseModel):
    """One skill: its training and validation sources, the sizes to try and the score that measures it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    train: list[str] = Field(min_length=1)
    validation: list[str] = Field(default_factory=list)
    sizes: Sizes = Field(default_factory=lambda: Sizes(percentages=[100]))
    score: str

    _lists = field_validator("train", "validation", mode="before")(_as_list)

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(f"skill name {name!r}: use letters, digits, '_', '.', '-'")
        return name


class Data(BaseModel):
    model_config = ConfigDict(extra="forbid")

    general: list[str] = Field(min_length=1)
    skills: list[Skill] = Field(min_length=1)

    _lists = field_validator("general", mode="before")(_as_list)

    @field_validator("skills")
    @classmethod
    def _unique_names(cls, skills: list[Skill]) -> list[Skill]:
        seen: set[str] = set()
        for skill in skills:
            if skill.name in seen:
                raise ValueError(f"two skills are named {skill.name!r}")
            seen.add(skill.name)
        return skills


class OmegaRange(BaseModel):
    """``start, start+step, ..., ≤ stop`` (inclusive, rounded to 10 decimals so 0.1 steps stay exact)."""

    model_config = ConfigDict(extra="forbid")

    start: float = 0.1
    stop: float = 1.0
    step: float = 0.1

    def values(self) -> list[float]:
        if not self.step > 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        count = math.floor((self.stop - self.start) / self.step + 1e-9) + 1
        return [round(self.start + i * self.step, 10) for i in range(max(count, 0))]


class Merge(BaseModel):
    """Which merge methods PTM uses and the ω sweep (θ = θ_G + ω·τ_D, τ_D = θ_D − θ_base)."""

    model_config = ConfigDict(extra="forbid")

    methods: list[Literal["task_arithmetic", "linear", "wise_ft", "ties", "dare_ties"]] = Field(
        default_factory=lambda: ["task_arithmetic"], min_length=1
    )
    omegas: list[float] | OmegaRange = Field(default_factory=OmegaRange)
    parameters: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("parameters")
    @classmethod
    def _known_methods(cls, parameters: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for method in parameters:
            if method not in MERGE_METHODS:
                raise ValueError(f"unknown merge method {method!r} (known: {', '.join(MERGE_METHODS)})")
        return parameters

    def parameters_for(self, method: str) -> dict[str, Any]:
        """``method``'s merge parameters: the defaults updated by the spec's ``merge.parameters``."""
        return {**DEFAULT_MERGE_PARAMETERS[method], **self.parameters.get(method, {})}

    @field_validator("omegas")
    @classmethod
    def _omegas_in_range(cls, omegas: list[float] | OmegaRange) -> list[float] | OmegaRange:
        values = omegas.values() if isinstance(omegas, OmegaRange) else omegas
        if not values:
            raise ValueError("the ω range is empty")
        bad = [w for w in values if not (math.isfinite(w) and OMEGA_MIN <= w <= OMEGA_MAX)]
        if bad:
            raise ValueError(f"ω must be in [{OMEGA_MIN:g}, {OMEGA_MAX:g}], got {bad[0]:g}")
        if len(set(values)) != len(values):
            raise ValueError(f"ω values repeat: {values}")
        return omegas

    def omega_values(self) -> list[float]:
        return sorted(self.omegas.values() if isinstance(self.omegas, OmegaRange) else self.omegas)


class Selection(BaseModel):
    """How ω is chosen: the heuristic |D|/|G| and/or the validation pick with tolerance ε."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Literal["heuristic", "validation"]] = Field(
        default_factory=lambda: ["heuristic", "validation"], min_length=1
    )
    epsilon: float = Field(0.05, ge=0.0, lt=1.0)


class Launcher(BaseModel):
    """How training steps run: in this process (no accelerate config) or as ``accelerate launch`` children."""

    model_config = ConfigDict(extra="forbid")

    accelerate_config: str | None = None
    num_processes: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _processes_need_a_config(self) -> Launcher:
        if self.num_processes is not None and self.accelerate_config is None:
            raise ValueError("num_processes needs an accelerate_config (in-process training is one process)")
        return self


def _check_eval_keys(section: dict[str, Any]) -> None:
    """The ``eval`` section holds scores and two options; a typo (``limt``) is named, not mistyped."""
    from difflib import get_close_matches

    from skillmerge.evaluate.suites import CATEGORY_NAMES

    allowed = (*CATEGORY_NAMES, "limit", "options", "batch_size")
    for key in section:
        if key not in allowed:
            close = get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            scores = ", ".join(CATEGORY_NAMES)
            what = "score" if isinstance(section[key], list) else "key"
            known = f"scores: {scores}; options: limit, options, batch_size"
            raise ValueError(f"eval: unknown {what} {key!r}{hint} ({known})")


class ExperimentSpec(BaseModel):
    """A validated experiment; see the module docstring for the YAML form."""

    model_config = ConfigDict(extra="forbid")

    name: str = "experiment"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    models: Models
    data: Data
    methods: list[ArmName] = Field(min_length=1)  # the arms to plan (θ_G's is always planned)
    merge: Merge = Field(default_factory=Merge)
    selection: Selection = Field(default_factory=Selection)
    training: dict[str, dict[str, Any]] = Field(default_factory=dict)
    eval: dict[str, list[str]] = Field(min_length=1)
    eval_limit: int | None = Field(None, ge=1)  # YAML: eval.limit
    eval_options: dict[str, dict[str, Any]] = Field(default_factory=dict)  # YAML: eval.options
    # YAML: eval.batch_size — prompts per forward pass; not in any key (greedy replies do not depend on it)
    eval_batch_size: int = Field(16, ge=1)
    launcher: Launcher = Field(default_factory=Launcher)  # YAML: training.launcher

    @model_validator(mode="before")
    @classmethod
    def _lift_section_options(cls, raw: Any) -> Any:
        # eval.limit and training.launcher sit with the scores / model kinds in YAML; they are options, not
        # entries, so they move to their own fields before the sections are validated.
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        if isinstance(raw.get("eval"), dict):
            _check_eval_keys(raw["eval"])
        for section, key, field_name in (
            ("eval", "limit", "eval_limit"),
            ("eval", "options", "eval_options"),
            ("eval", "batch_size", "eval_batch_size"),
            ("training", "launcher", "launcher"),
        ):
            value = raw.get(section)
            if isinstance(value, dict) and key in value:
                if field_name in raw:
                    raise ValueError(f"give {section}.{key} or {field_name}, not both")
                raw[section] = {k: v for k, v in value.items() if k != key}
                raw[field_name] = value[key]
        return raw

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds repeat: {seeds}")
        return seeds

    @field_validator("training")
    @classmethod
    def _known_kinds(cls, training: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        kinds = train_kinds()
        for kind in training:
            if kind != "default" and kind not in kinds:
                raise ValueError(f"unknown model kind {kind!r} (known: default, {', '.join(kinds)})")
        return training

    @field_validator("eval")
    @classmethod
    def _known_suites(cls, suites: dict[str, list[str]]) -> dict[str, list[str]]:
        from skillmerge.evaluate.suites import CATEGORY_NAMES, suite_names

        known = suite_names()
        for score, names in suites.items():
            if score not in CATEGORY_NAMES:
                raise ValueError(f"unknown score {score!r} (known: {', '.join(CATEGORY_NAMES)})")
            if not names:
                raise ValueError(f"score {score!r} lists no suite")
            for name in names:
                if name not in known:
                    raise ValueError(f"{score}: unknown suite {name!r} (known: {', '.join(known)})")
        return suites

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        if "general" not in self.eval:
            raise ValueError("eval: a 'general' score is needed (the ω constraint and every table use it)")
        # ``chat`` scores each skill on its validation files when ω is picked on validation data.
        evaluated = set(self.suites()) | ({"chat"} if self.needs_validation else set())
        unknown = sorted(set(self.eval_options) - evaluated)
        if unknown:
            raise ValueError(f"eval.options: suite {unknown[0]!r} is not evaluated (not named under eval)")
        for suite, opts in self.eval_options.items():
            _check_suite_options(suite, opts)
        for i, skill in enumerate(self.data.skills):
            if skill.score not in self.eval:
                raise ValueError(f"data.skills.{i}.score: score {skill.score!r} has no suites in eval")
            if self.needs_validation and not skill.validation:
                raise ValueError(
                    f"data.skills.{i}.validation: skill {skill.name!r} has no validation data, "
                    "which the validation pick of ω needs"
                )
        for arm in self.arms():
            arm.check(self)
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: a method repeats: {self.methods}")
        for kind in train_kinds():  # every recipe must validate now, not mid-run
            self.train_fields(kind)
        self._check_merge_parameters()
        return self

    def _check_merge_parameters(self) -> None:
        """Each merge method's parameters as the merge stage validates them (a symbolic recipe, no files)."""
        from skillmerge.merge.config import config_from_dict

        for method in self.merge.methods:
            recipe = merge_recipe(
                method, "<base>", "<general>", ["<skill>"], [0.5], self.merge.parameters_for(method)
            )
            try:
                config_from_dict(recipe, f"merge.parameters.{method}")
            except UsageError as err:
                raise ValueError(str(err)) from None
        unused = sorted(set(self.merge.parameters) - set(self.merge.methods))
        if unused:
            raise ValueError(f"merge.parameters: {unused[0]!r} is not in merge.methods")

    def arms(self) -> list[Arm]:
        """The arms this spec plans, in planning order (θ_G's first)."""
        return planned_arms(self.methods)

    @property
    def needs_validation(self) -> bool:
        """ω is picked on validation data for some planned arm's merges."""
        merging = any(arm.picks_omega for arm in self.arms())
        return merging and "validation" in self.selection.rules

    def train_fields(self, kind: str) -> dict[str, Any]:
        """The validated recipe of ``kind`` (preset + default + kind overrides), minus model/out/data files.

        The result is what a training step's cache key covers: changing a preset default changes it too.
        """
        from skillmerge.train.config import build_train_config, merge_fields

        fields = merge_fields(self.training.get("default", {}), self.training.get(kind, {}))
        try:
            config = build_train_config(
                {**fields, "model": "<model>", "out": "<out>"}, where=f"training.{kind}"
            )
        except UsageError as err:
            raise ValueError(str(err)) from None
        skip = {"model", "seed", "data.files", "data.mixture", "data.validation"}  # the DAG sets these
        return {k: v for k, v in config.trajectory().items() if k not in skip}

    def suites(self) -> list[str]:
        """Every suite named in ``eval``, in first-mention order."""
        return list(dict.fromkeys(name for names in self.eval.values() for name in names))

    def resolve_paths(self, root: Path) -> ExperimentSpec:
        """A copy with relative model and data paths made absolute against ``root``."""

        def fix(value: str) -> str:
            if value.startswith("hub:") or Path(value).is_absolute():
                return value
            return str((root / value).resolve())

        skills = [
            s.model_copy(
                update={"train": [fix(p) for p in s.train], "validation": [fix(p) for p in s.validation]}
            )
            for s in self.data.skills
        ]
        models = self.models.model_copy(
            update={
                "base": fix(self.models.base),
                "general": fix(self.models.general) if self.models.general else None,
            }
        )
        data = self.data.model_copy(update={"general": [fix(p) for p in self.data.general], "skills": skills})
        options = {
            suite: {
                key: _fix_paths(value, fix) if key in PATH_OPTIONS else value for key, value in opts.items()
            }
            for suite, opts in self.eval_options.items()
        }
        config = self.launcher.accelerate_config
        launcher = self.launcher.model_copy(update={"accelerate_config": fix(config) if config else None})
        return self.model_copy(
            update={"models": models, "data": data, "launcher": launcher, "eval_options": options}
        )

    def option_paths(self, suites: list[str]) -> dict[str, str]:
        """``{"<suite>.<option>[.<key>]": path}`` of the file/folder options of ``suites`` (fingerprinted)."""
        found: dict[str, str] = {}
        for suite in suites:
            for key, value in self.eval_options.get(suite, {}).items():
                if key in PATH_OPTIONS:
                    for sub, path in _paths_in(value):
                        found[f"eval.options.{suite}.{key}{sub}"] = path
        return found


PATH_OPTIONS = ("path", "paths", "problems", "mc_path", "separation")
COMMON_SUITE_OPTIONS = ("limit",)  # taken by skillmerge.evaluate.run for every suite


def _check_suite_options(suite: str, options: dict[str, Any]) -> None:
    """Refuse option names the suite's factory does not take (values are checked when the suite is built)."""
    import inspect

    from skillmerge.evaluate.suites import SUITES

    parameters = inspect.signature(SUITES[suite]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    for name in options:
        if name in COMMON_SUITE_OPTIONS:
            continue
        if name not in parameters or name == "self":
            known = ", ".join([*(p for p in parameters if p != "self"), *COMMON_SUITE_OPTIONS])
            raise ValueError(f"eval.options.{suite}: unknown option {name!r} (known: {known})")


def _fix_paths(value: Any, fix: Any) -> Any:
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, list):
        return [_fix_paths(v, fix) for v in value]
    if isinstance(value, dict):
        return {k: _fix_paths(v, fix) for k, v in value.items()}
    return value


def _paths_in(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(prefix, value)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _paths_in(v, f"{prefix}.{i}")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths_in(v, f"{prefix}.{k}")]
    return []


def spec_from_dict(raw: Any, source: str | Path = "<spec>") -> ExperimentSpec:
    """Validate a parsed spec; any problem is one :class:`UsageError` line ``SOURCE: field: problem``."""
    if not isinstance(raw, dict):
        raise UsageError(f"{source}: an experiment spec must be a mapping, got {type(raw).__name__}")
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as err:
        raise UsageError(f"{source}: {first_validation_error(err)}") from None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate a spec YAML; relative paths are resolved against the file's directory."""
    path = Path(path)
    spec = spec_from_dict(read_yaml_mapping(path, "experiment spec"), path)
    spec = spec.resolve_paths(path.resolve().parent)
    config = spec.launcher.accelerate_config
    if config is not None and not Path(config).is_file():
        raise UsageError(f"{path}: training.launcher.accelerate_config: {config} does not exist")
    return spec
