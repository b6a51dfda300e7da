"""What an arm is, and the registry the spec's ``methods`` names are looked up in.

An arm answers one question of the comparison ("what does CFT cost and score?") and owns everything about
it: the steps it needs, their typed configs, the training kinds it reads from the spec's ``training``
section, the spec rules it imposes and the training recipes its cost is counted in. Planning an arm is one
call, :meth:`Arm.plan`, on the shared :class:`~skillmerge.experiment.planner.Planner`, which deduplicates
steps several arms need (θ_G, the data subsets, θ_D) by id.

To add an arm: subclass :class:`Arm`, set ``name`` (its entry in ``methods``), ``trains`` and ``costs``,
write ``plan`` (and ``check`` for spec rules), and call :func:`register_arm` on an instance — from the
package's built-ins or from your own code before the spec is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # types only: arms are planned with a Planner, never import it (it imports the spec)
    from skillmerge.experiment.planner import Planner
    from skillmerge.experiment.spec import ExperimentSpec


class Arm:
    """One arm of the comparison; see the module docstring."""

    name: ClassVar[str]
    trains: ClassVar[tuple[str, ...]] = ()  # training kinds (``training.<kind>``) its steps use
    costs: ClassVar[tuple[str, ...]] = ()  # training recipes whose cost is this arm's (the report's cost)
    picks_omega: ClassVar[bool] = False  # merges whose ω the validation rule picks (needs validation data)
    always: ClassVar[bool] = False  # planned for every spec (θ_G), not named in ``methods``

    def check(self, spec: ExperimentSpec) -> None:
        """Raise ``ValueError`` (one line) when ``spec`` cannot run this arm; called when the spec loads."""

    def plan(self, planner: Planner) -> None:
        """Add this arm's steps to ``planner``."""
        raise NotImplementedError


ARMS: dict[str, Arm] = {}


def register_arm(arm: Arm) -> Arm:
    """Make ``arm`` plannable (``methods: [NAME]``); arms are planned in registration order."""
    if not getattr(arm, "name", None):
        raise ValueError(f"{type(arm).__name__}: an arm needs a name")
    if arm.name in ARMS and type(ARMS[arm.name]) is not type(arm):
        raise ValueError(f"an arm named {arm.name!r} is already registered ({type(ARMS[arm.name]).__name__})")
    ARMS[arm.name] = arm
    return arm


def arm_names() -> list[str]:
    """The names a spec's ``methods`` may list (registration order)."""
    return [name for name, arm in ARMS.items() if not arm.always]


def planned_arms(methods: list[str]) -> list[Arm]:
    """The arms a spec plans: every ``always`` arm, then the named ones, all in registration order."""
    return [arm for name, arm in ARMS.items() if arm.always or name in methods]


def train_kinds() -> list[str]:
    """Every training kind some registered arm uses (the keys ``training`` may hold besides ``default``)."""
    return list(dict.fromkeys(kind for arm in ARMS.values() for kind in arm.trains))
