"""θ_G, the general model every arm starts from or is compared with: given, or trained from θ_base on G."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from skillmerge.experiment.arms.base import Arm
from skillmerge.experiment.step_configs import TrainStepConfig

if TYPE_CHECKING:
    from skillmerge.experiment.planner import Planner


class GeneralArm(Arm):
    """θ_G (trained once, with the first seed, unless the spec gives it), evaluated on test and validation."""

    name: ClassVar[str] = "general"
    trains: ClassVar[tuple[str, ...]] = ("general",)
    always: ClassVar[bool] = True

    def plan(self, planner: Planner) -> None:
        spec = planner.spec
        if spec.models.general is None:
            config = TrainStepConfig(
                recipe="general",
                train=spec.train_fields("general"),
                seed=spec.seeds[0],
                data=(planner.general_data,),
            )
            planner.general_model = planner.train("train/general", config)
        planner.evaluate(planner.general_model, "general")
        if spec.needs_validation:
            planner.general_validation = planner.validate(planner.general_model, "general")
