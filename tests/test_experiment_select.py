"""ω selection: the |D|/|G| heuristic and the validation pick under the general-score constraint."""

from __future__ import annotations

import pytest

from skillmerge.errors import UsageError
from skillmerge.experiment.select import heuristic_omega, least_harm_omega, pick_omega


def test_heuristic_omega_is_skill_over_general_size() -> None:
    assert heuristic_omega(2_500, 10_000) == 0.25
    assert heuristic_omega(0, 7) == 0.0


def test_heuristic_omega_refuses_empty_general_data() -> None:
    with pytest.raises(UsageError, match=r"\|G\|=0"):
        heuristic_omega(10, 0)


def test_pick_takes_best_skill_when_constraint_allows() -> None:
    sweep = {0.2: (40.0, 60.0), 0.5: (55.0, 59.0), 1.0: (70.0, 58.5)}
    assert pick_omega(sweep, general_baseline=60.0, epsilon=0.05) == 1.0  # floor 57


def test_pick_respects_binding_general_constraint() -> None:
    sweep = {0.2: (40.0, 60.0), 0.5: (55.0, 58.0), 1.0: (70.0, 50.0)}
    assert pick_omega(sweep, general_baseline=60.0, epsilon=0.05) == 0.5  # 1.0 falls below 57


def test_pick_breaks_ties_by_general_then_smaller_omega() -> None:
    assert pick_omega({0.4: (50.0, 58.0), 0.8: (50.0, 59.0)}, 60.0, 0.05) == 0.8
    assert pick_omega({0.4: (50.0, 59.0), 0.8: (50.0, 59.0)}, 60.0, 0.05) == 0.4


def test_pick_returns_none_when_no_omega_qualifies() -> None:
    assert pick_omega({0.5: (90.0, 40.0), 1.0: (95.0, 30.0)}, 60.0, 0.05) is None
    assert pick_omega({0.5: (float("nan"), 60.0)}, 60.0, 0.05) is None


def test_pick_with_zero_epsilon_needs_the_baseline_itself() -> None:
    assert pick_omega({0.1: (10.0, 60.0), 0.2: (20.0, 59.99)}, 60.0, 0.0) == 0.1


def test_least_harm_takes_the_highest_general_score_then_skill_then_smaller_omega() -> None:
    assert least_harm_omega({0.5: (90.0, 40.0), 1.0: (95.0, 30.0), 1.5: (99.0, 20.0)}) == 0.5
    assert least_harm_omega({0.5: (80.0, 40.0), 1.0: (95.0, 40.0)}) == 1.0
    assert least_harm_omega({0.5: (95.0, 40.0), 1.0: (95.0, 40.0)}) == 0.5
    assert least_harm_omega({0.5: (float("nan"), 41.0), 1.0: (95.0, 40.0)}) == 0.5


def test_least_harm_is_none_without_a_finite_general_score() -> None:
    assert least_harm_omega({0.5: (90.0, float("nan"))}) is None
    assert least_harm_omega({}) is None
