"""PTM: train the skill in isolation (θ_D from θ_base), then merge it into θ_G at every ω of the sweep.

    θ = θ_G + ω·τ_D,  τ_D = θ_D − θ_base          (task arithmetic; TIES/DARE sparsify τ_D first)

Linear and WiSE-FT rows are the interpolation baselines the paper compares against (WiSE-FT moves θ_G
towards the CFT model, so it needs the CFT arm). Each merged model is evaluated on the test split and, when
ω is picked on validation data, on the validation split with the skill's own validation chats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from skillmerge.experiment.arms.base import Arm
from skillmerge.experiment.arms.cft import cft_id
from skillmerge.experiment.arms.skill_model import skill_model
from skillmerge.experiment.merge_recipe import FORMS
from skillmerge.experiment.step_configs import PtmMergeConfig

if TYPE_CHECKING:
    from skillmerge.experiment.planner import Planner
    from skillmerge.experiment.spec import ExperimentSpec


class PtmArm(Arm):
    """``merge/ptm/<method>/<cell>/w<ω>`` for every merge method and ω, each evaluated (and validated)."""

    name: ClassVar[str] = "ptm"
    trains: ClassVar[tuple[str, ...]] = ("skill",)
    picks_omega: ClassVar[bool] = True

    def check(self, spec: ExperimentSpec) -> None:
        towards_cft = [m for m in spec.merge.methods if FORMS[m].towards_cft]
        if towards_cft and "cft" not in spec.methods:
            raise ValueError(
                f"merge.methods: {towards_cft[0]} interpolates θ_G towards the CFT model; add cft to methods"
            )

    def plan(self, planner: Planner) -> None:
        spec = planner.spec
        for cell in planner.cells():
            theta_d = skill_model(planner, cell)
            for method in spec.merge.methods:
                form = FORMS[method]
                source = cft_id(cell) if form.towards_cft else theta_d
                for omega in spec.merge.omega_values():
                    label = f"ptm/{method}/{cell.tag}/w{omega:g}"
                    config = PtmMergeConfig(
                        merge=method,
                        omega=omega,
                        formula=form.formula,
                        parameters=spec.merge.parameters_for(method),
                        model=source,
                    )
                    planner.merge_evaluated(label, config, source, cell.skill)
