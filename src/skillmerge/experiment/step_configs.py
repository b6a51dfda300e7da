"""Typed step configs: one small model per step kind (data, train, merge, eval).

A config has two parts:

- **key fields** — what defines the step's output besides its inputs; :meth:`StepConfig.record` is their
  dict, which goes into the step's cache key and its ``manifest.json`` (the report reads it);
- **wiring** — which dependency plays which role (``Field(exclude=True)``): the dependencies' keys are in
  the step's key already, so wiring adds nothing to it, but it tells the executor where to look without
  decoding ids or labels.

The executors (:mod:`skillmerge.experiment.steps`) dispatch on the config's type. Fields named in
``OMITTED_WHEN_NONE`` are left out of the record when unset, so adding an optional field keeps old keys.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class StepConfig(BaseModel):
    """A step's typed config; ``kind`` names the step kind, :meth:`record` is the keyed dict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str]
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()

    def record(self) -> dict[str, Any]:
        """The key fields as a plain dict (wiring excluded; optional fields omitted when unset)."""
        dumped = self.model_dump(mode="python")
        return {k: v for k, v in dumped.items() if not (v is None and k in self.OMITTED_WHEN_NONE)}


class DataConfig(StepConfig):
    """The general mix (every input file) or a nested subset of one skill's data: per-task caps or a %."""

    kind: ClassVar[str] = "data"
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"skill", "caps", "percentages"})

    what: Literal["general", "skill"]
    skill: str | None = None
    caps: int | None = None
    percentages: float | None = None
    seed: int


class TrainStepConfig(StepConfig):
    """SFT of ``start`` (θ_base or θ_G) on the files of the ``data`` steps (+ a replay draw), or a link.

    ``recipe`` labels the model kind (``general``, ``rt``, ``cft``, ``cft_replay``, ``skill`` or an arm's
    own); the report groups costs by it. ``train`` is the validated recipe (the trajectory fields).
    """

    kind: ClassVar[str] = "train"
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"replay", "same_as"})

    recipe: str
    train: dict[str, Any]
    replay: Literal["as_many_general_as_skill"] | None = None
    seed: int
    same_as: str | None = None  # an identical training's step id: its model is linked, not retrained
    # wiring
    start: Literal["base", "general"] = Field("base", exclude=True)
    data: tuple[str, ...] = Field((), exclude=True)  # data steps whose files are trained on, in order
    replay_from: str | None = Field(None, exclude=True)  # the general data step the replay is drawn from


class PtmMergeConfig(StepConfig):
    """One merge of θ_G with one model at one ω (PTM: θ_G + ω·τ_D; WiSE-FT: towards the CFT model)."""

    kind: ClassVar[str] = "merge"
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"vector_from"})

    merge: str
    omega: float
    formula: str
    parameters: dict[str, Any]
    vector_from: Literal["general"] | None = None  # task vector against θ_G instead of θ_base (ptm_general)
    # wiring
    model: str = Field(exclude=True)  # the train step merged into θ_G (θ_D, or the CFT model for WiSE-FT)


class MultiMergeConfig(StepConfig):
    """θ_G + Σ_k ω_k·τ_k over a group of skills, ω_k by ``omega_rule`` (heuristic or validation pick)."""

    kind: ClassVar[str] = "merge"

    merge: str
    skills: list[str]
    omega_rule: Literal["heuristic", "validation"]
    epsilon: float
    parameters: dict[str, Any]
    # wiring
    models: tuple[str, ...] = Field(exclude=True)  # θ_D of each skill, in ``skills`` order
    general_data: str = Field(exclude=True)  # |G| of the heuristic
    validations: tuple[str, ...] = Field((), exclude=True)  # the skills' PTM validation evaluations
    general_validation: str | None = Field(None, exclude=True)  # θ_G's validation evaluation (the baseline)


class EvalConfig(StepConfig):
    """The suites on one model: the test split, or the validation split that feeds the pick of ω.

    A validation step with ``skill`` also scores that skill's own validation chats (the ``chat`` suite).
    ``options`` holds the spec's per-suite options (file options as ``@input:ROLE`` references).
    """

    kind: ClassVar[str] = "eval"
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"skill", "options"})

    split: Literal["test", "validation"]
    skill: str | None = None
    suites: list[str]
    limit: int | None
    options: dict[str, dict[str, Any]] | None = None


MergeStepConfig = PtmMergeConfig | MultiMergeConfig
