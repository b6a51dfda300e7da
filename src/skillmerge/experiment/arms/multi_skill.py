"""Multi-skill merges: θ_G + Σ_k ω_k·τ_k over all skills and over every pair (F5: do skills interfere?).

ω_k is ``|D_k| / |G|`` (the heuristic rule) or the ω skill k's own PTM sweep picked on validation data (the
validation rule, which reads those sweeps' validation evaluations). Each skill contributes θ_D of its
largest size, first seed. WiSE-FT interpolates towards one model only, so it has no multi-skill form.
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, ClassVar

from skillmerge.experiment.arms.base import Arm
from skillmerge.experiment.arms.skill_model import skill_model
from skillmerge.experiment.merge_recipe import FORMS
from skillmerge.experiment.step_configs import EvalConfig, MultiMergeConfig, PtmMergeConfig

if TYPE_CHECKING:
    from skillmerge.experiment.planner import Planner
    from skillmerge.experiment.spec import ExperimentSpec


class MultiSkillArm(Arm):
    """``merge/multi/<method>/<a+b+...>/<rule>`` for all skills and every pair, each evaluated."""

    name: ClassVar[str] = "multi_skill"
    trains: ClassVar[tuple[str, ...]] = ("skill",)
    picks_omega: ClassVar[bool] = True

    def check(self, spec: ExperimentSpec) -> None:
        if len(spec.data.skills) < 2:
            raise ValueError("methods: multi_skill needs at least two skills")

    def plan(self, planner: Planner) -> None:
        spec = planner.spec
        largest = {}  # skill → θ_D of its largest size, first seed
        for cell in planner.cells():
            if cell.seed == spec.seeds[0] and cell.size == cell.skill.sizes.values[-1]:
                largest[cell.skill.name] = skill_model(planner, cell)
        names = [s.name for s in spec.data.skills]
        groups = {tuple(names)} | set(combinations(names, 2))
        for group in sorted(groups, key=lambda g: (len(g), g)):
            for method in [m for m in spec.merge.methods if FORMS[m].several_skills]:
                for rule in spec.selection.rules:
                    models = tuple(largest[n] for n in group)
                    validations: tuple[str, ...] = ()
                    if rule == "validation":
                        validations = _ptm_validations(planner, group, method)
                    config = MultiMergeConfig(
                        merge=method,
                        skills=list(group),
                        omega_rule=rule,
                        epsilon=spec.selection.epsilon,
                        parameters=spec.merge.parameters_for(method),
                        models=models,
                        general_data=planner.general_data,
                        validations=validations,
                        general_validation=planner.general_validation if rule == "validation" else None,
                    )
                    deps = (*models, planner.general_data, *validations)
                    if config.general_validation:
                        deps += (config.general_validation,)
                    label = f"multi/{method}/{'+'.join(group)}/{rule}"
                    planner.evaluate(planner.merge(f"merge/{label}", config, deps), label)


def _ptm_validations(planner: Planner, group: tuple[str, ...], method: str) -> tuple[str, ...]:
    """The validation evaluations of every PTM merge with ``method`` of a skill in ``group``."""
    found = []
    for step in planner.configs(EvalConfig):
        config = step.config
        if not (isinstance(config, EvalConfig) and config.split == "validation" and config.skill in group):
            continue
        merged = planner.steps[step.deps[0]].config
        if isinstance(merged, PtmMergeConfig) and merged.merge == method:
            found.append(step.id)
    return tuple(found)
