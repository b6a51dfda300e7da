"""Choosing the merge weight ω (pure functions).

- Heuristic (paper Eq. 7): ``ω = |D| / |G|``, the skill data size over the general data size.
- Validation pick: among the swept ω whose general score keeps ``general(ω) ≥ (1 − ε)·general(θ_G)``, the one
  with the highest skill score. Ties on skill score go to the higher general score, then to the smaller ω
  (the smaller step away from θ_G). When no ω qualifies the pick is ``None``: the caller reports that rather
  than silently taking an ω that breaks the constraint.
- Least harm (:func:`least_harm_omega`): the swept ω with the highest general score, for a merge that must be
  made even when no ω keeps the constraint (the all-skills merge records that it fell back).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from skillmerge.errors import UsageError


def heuristic_omega(n_skill: int, n_general: int) -> float:
    """``|D| / |G|`` (paper Eq. 7) for ``n_skill`` skill and ``n_general`` general training examples."""
    if n_skill < 0 or n_general <= 0:
        raise UsageError(f"heuristic ω needs |D| ≥ 0 and |G| > 0, got |D|={n_skill}, |G|={n_general}")
    return n_skill / n_general


def pick_omega(
    sweep: Mapping[float, tuple[float, float]], general_baseline: float, epsilon: float
) -> float | None:
    """``argmax_ω skill(ω)`` subject to ``general(ω) ≥ (1 − ε)·general_baseline``; ``None`` if none qualifies.

    ``sweep`` maps ω to ``(skill_score, general_score)`` (higher is better). Ties: higher general score, then
    smaller ω. Non-finite scores never qualify.
    """
    if not 0.0 <= epsilon < 1.0:
        raise UsageError(f"epsilon must be in [0, 1), got {epsilon}")
    floor = (1.0 - epsilon) * general_baseline
    qualified = [
        (skill, general, omega)
        for omega, (skill, general) in sweep.items()
        if math.isfinite(skill) and math.isfinite(general) and general >= floor
    ]
    if not qualified:
        return None
    best = max(qualified, key=lambda row: (row[0], row[1], -row[2]))
    return best[2]


def least_harm_omega(sweep: Mapping[float, tuple[float, float]]) -> float | None:
    """The ω of ``sweep`` (ω → ``(skill_score, general_score)``) with the highest general score.

    Ties go to the higher skill score, then to the smaller ω; non-finite general scores never count, so
    ``None`` means no ω has one.
    """
    finite = [
        (general, skill if math.isfinite(skill) else -math.inf, -omega)
        for omega, (skill, general) in sweep.items()
        if math.isfinite(general)
    ]
    return -max(finite)[2] if finite else None
