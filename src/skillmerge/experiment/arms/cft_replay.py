"""CFT+replay: continued finetuning of θ_G on the skill data plus as many general examples, redrawn."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from skillmerge.experiment.arms.base import Arm
from skillmerge.experiment.step_configs import TrainStepConfig

if TYPE_CHECKING:
    from skillmerge.experiment.planner import Planner


class ReplayArm(Arm):
    """``train/cft_replay/<cell>``: θ_G on D plus |D| examples of G drawn with the seed, then evaluated."""

    name: ClassVar[str] = "cft_replay"
    trains: ClassVar[tuple[str, ...]] = ("cft_replay",)

    def plan(self, planner: Planner) -> None:
        for cell in planner.cells():
            config = TrainStepConfig(
                recipe="cft_replay",
                train=planner.spec.train_fields("cft_replay"),
                replay="as_many_general_as_skill",
                seed=cell.seed,
                start="general",
                data=(planner.skill_data(cell),),
                replay_from=planner.general_data,
            )
            step = planner.train(f"train/cft_replay/{cell.tag}", config)
            planner.evaluate(step, f"cft_replay/{cell.tag}")
