"""θ_D: θ_base trained on one cell's skill data only — the model whose task vector PTM merges.

Shared by the PTM and multi-skill arms (the planner keeps one step per id). When the spec gives θ_G and it
is θ_base itself, and the skill and CFT recipes match, θ_D *is* the CFT model: the step links the CFT
weights instead of training them again (its cost record is that same training's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skillmerge.experiment.arms.cft import cft_id
from skillmerge.experiment.step_configs import TrainStepConfig

if TYPE_CHECKING:
    from skillmerge.experiment.planner import Cell, Planner


def skill_model_id(cell: Cell) -> str:
    return f"train/skill/{cell.tag}"


def skill_model(planner: Planner, cell: Cell) -> str:
    """``train/skill/<cell>`` (added once), linked to the CFT model when that is the same training."""
    spec = planner.spec
    data = planner.skill_data(cell)
    fields = spec.train_fields("skill")
    same_as = cft_id(cell) if planner.same_start and fields == spec.train_fields("cft") else None
    if same_as not in planner.steps:
        same_as = None  # no CFT arm planned: train θ_D itself
    config = TrainStepConfig(recipe="skill", train=fields, seed=cell.seed, same_as=same_as, data=(data,))
    return planner.train(skill_model_id(cell), config, (same_as,) if same_as else ())
