"""The arms of the comparison, one file each, registered in planning order.

====================  =========================================================  ==================
arm (``methods``)     what it plans                                              trains (its cost)
====================  =========================================================  ==================
(always) general      θ_G: given, or θ_base trained on G; evaluated              general
rt                    θ_base trained on G ∪ D per cell; evaluated                rt
cft                   θ_G finetuned on D per cell; evaluated                     cft
cft_replay            θ_G finetuned on D + |D| examples of G per cell            cft_replay
ptm                   θ_D from θ_base on D; θ_G + ω·τ_D per method and ω         skill
ptm_general           θ_D^G from θ_G on D; θ_G + ω·(θ_D^G − θ_G) (no base needed)  skill (or CFT's)
multi_skill           θ_G + Σ_k ω_k·τ_k over all skills and every pair           skill
====================  =========================================================  ==================

A cell is one skill at one data size and seed. See :mod:`skillmerge.experiment.arms.base` to add an arm.
"""

from skillmerge.experiment.arms.base import ARMS, Arm, arm_names, planned_arms, register_arm, train_kinds
from skillmerge.experiment.arms.cft import ContinuedFinetuneArm
from skillmerge.experiment.arms.cft_replay import ReplayArm
from skillmerge.experiment.arms.general import GeneralArm
from skillmerge.experiment.arms.multi_skill import MultiSkillArm
from skillmerge.experiment.arms.ptm import PtmArm
from skillmerge.experiment.arms.ptm_general import PtmFromGeneralArm
from skillmerge.experiment.arms.rt import RetrainArm

for _arm in (
    GeneralArm(),
    RetrainArm(),
    ContinuedFinetuneArm(),
    ReplayArm(),
    PtmArm(),
    PtmFromGeneralArm(),
    MultiSkillArm(),
):
    register_arm(_arm)

__all__ = ["ARMS", "Arm", "arm_names", "planned_arms", "register_arm", "train_kinds"]
