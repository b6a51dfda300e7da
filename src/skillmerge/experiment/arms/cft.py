"""CFT: continued finetuning of θ_G on the skill data alone (cheap, and it forgets)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from skillmerge.experiment.arms.base import Arm
from skillmerge.experiment.step_configs import TrainStepConfig

if TYPE_CHECKING:
    from skillmerge.experiment.planner import Cell, Planner

CFT = "train/cft"


def cft_id(cell: Cell) -> str:
    """The CFT model's step id for ``cell`` (WiSE-FT merges and a linked θ_D read it)."""
    return f"{CFT}/{cell.tag}"


class ContinuedFinetuneArm(Arm):
    """``train/cft/<cell>``: θ_G finetuned on the cell's skill data, then evaluated."""

    name: ClassVar[str] = "cft"
    trains: ClassVar[tuple[str, ...]] = ("cft",)

    def plan(self, planner: Planner) -> None:
        for cell in planner.cells():
            config = TrainStepConfig(
                recipe="cft",
                train=planner.spec.train_fields("cft"),
                seed=cell.seed,
                start="general",
                data=(planner.skill_data(cell),),
            )
            planner.evaluate(planner.train(cft_id(cell), config), f"cft/{cell.tag}")
