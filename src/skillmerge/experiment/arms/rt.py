"""RT: retraining θ_base on the whole mix G ∪ D (the expensive upper reference)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from skillmerge.experiment.arms.base import Arm
from skillmerge.experiment.step_configs import TrainStepConfig

if TYPE_CHECKING:
    from skillmerge.experiment.planner import Planner


class RetrainArm(Arm):
    """``train/rt/<cell>``: θ_base on the general mix plus the cell's skill data, then evaluated."""

    name: ClassVar[str] = "rt"
    trains: ClassVar[tuple[str, ...]] = ("rt",)

    def plan(self, planner: Planner) -> None:
        for cell in planner.cells():
            config = TrainStepConfig(
                recipe="rt",
                train=planner.spec.train_fields("rt"),
                seed=cell.seed,
                data=(planner.general_data, planner.skill_data(cell)),
            )
            planner.evaluate(planner.train(f"train/rt/{cell.tag}", config), f"rt/{cell.tag}")
