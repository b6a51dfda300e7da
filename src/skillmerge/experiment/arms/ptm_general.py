"""PTM from θ_G: the skill trained from the general model itself, merged back along its own task vector.

    θ = θ_G + ω·(θ_D^G − θ_G),   θ_D^G = θ_G finetuned on D alone (the "skill" recipe)

The form for a user who has only an instruct model and no base: with the same recipe as CFT, θ_D^G *is* the
CFT model, so the step links it (no second training) and ω = 1 is CFT itself. With a separate θ_base in the
spec, this arm sits beside ``ptm`` (θ_G + ω·(θ_D − θ_base)) on the same θ_G and tests, so the two forms are
compared directly. Task-vector methods only (task_arithmetic, ties, dare_ties): the vector is taken against
θ_G. Rows are labelled ``ptm/<method>-from-G/...``, so the report draws them as a method of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from skillmerge.experiment.arms.base import Arm
from skillmerge.experiment.arms.cft import cft_id
from skillmerge.experiment.merge_recipe import FORMS
from skillmerge.experiment.step_configs import PtmMergeConfig, TrainStepConfig

if TYPE_CHECKING:
    from skillmerge.experiment.planner import Cell, Planner
    from skillmerge.experiment.spec import ExperimentSpec

SUFFIX = "-from-G"


def skill_from_general(planner: Planner, cell: Cell) -> str:
    """``train/skill-from-G/<cell>``: θ_G on the cell's skill data (a link to CFT when that is the same)."""
    spec = planner.spec
    fields = spec.train_fields("skill")
    same_as = cft_id(cell) if fields == spec.train_fields("cft") and cft_id(cell) in planner.steps else None
    config = TrainStepConfig(
        recipe="skill_from_G",
        train=fields,
        seed=cell.seed,
        same_as=same_as,
        start="general",
        data=(planner.skill_data(cell),),
    )
    return planner.train(f"train/skill-from-G/{cell.tag}", config, (same_as,) if same_as else ())


class PtmFromGeneralArm(Arm):
    """``merge/ptm/<method>-from-G/<cell>/w<ω>`` per task-vector method and ω, evaluated (and validated)."""

    name: ClassVar[str] = "ptm_general"
    trains: ClassVar[tuple[str, ...]] = ("skill",)
    picks_omega: ClassVar[bool] = True

    def check(self, spec: ExperimentSpec) -> None:
        if not [m for m in spec.merge.methods if FORMS[m].uses_base]:
            raise ValueError(
                "ptm_general merges along θ_D − θ_G: merge.methods needs task_arithmetic, ties or dare_ties"
            )

    def plan(self, planner: Planner) -> None:
        spec = planner.spec
        for cell in planner.cells():
            source = skill_from_general(planner, cell)
            for method in spec.merge.methods:
                form = FORMS[method]
                if not form.uses_base:
                    continue
                for omega in spec.merge.omega_values():
                    label = f"ptm/{method}{SUFFIX}/{cell.tag}/w{omega:g}"
                    config = PtmMergeConfig(
                        merge=method,
                        omega=omega,
                        formula=form.formula.replace("theta_D - theta_base", "theta_D_from_G - theta_G"),
                        parameters=spec.merge.parameters_for(method),
                        model=source,
                        vector_from="general",
                    )
                    planner.merge_evaluated(label, config, source, cell.skill)
