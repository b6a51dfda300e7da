"""pass@k: the unbiased estimator 1 − C(n−c, k)/C(n, k), checked on hand-computed values and properties."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skillmerge.evaluate.passk import mean_pass_at_k, pass_at_k


def exact(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(comb(n - c, k), comb(n, k))


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 0, 1, 0.0),
        (5, 5, 3, 1.0),
        (10, 3, 1, 0.3),
        (4, 1, 2, 0.5),  # 1 − C(3,2)/C(4,2) = 1 − 3/6
        (3, 1, 2, 2 / 3),  # 1 − C(2,2)/C(3,2) = 1 − 1/3
        (20, 2, 10, 29 / 38),  # 1 − C(18,10)/C(20,10) = 1 − 43758/184756
        (20, 11, 10, 1.0),  # fewer than k wrong samples: every draw holds a correct one
    ],
)
def test_pass_at_k_matches_hand_computed_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_stable_for_large_n() -> None:
    # C(200, 100) ≈ 9e58: the product form must agree with exact rational arithmetic.
    for c in (1, 7, 50, 100):
        assert pass_at_k(200, c, 100) == pytest.approx(float(exact(200, c, 100)), rel=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 1, 6), (5, 1, 0), (5, 6, 1), (0, 0, 1), (5, -1, 1)])
def test_impossible_counts_are_refused(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass@"):
        pass_at_k(n, c, k)


@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_equals_exact_binomial_formula(args: tuple[int, int, int]) -> None:
    n, c, k = args
    value = pass_at_k(n, c, k)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(float(exact(n, c, k)), abs=1e-9)


@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_pass_at_1_is_the_fraction_correct(args: tuple[int, int]) -> None:
    n, c = args
    assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)


@given(st.integers(2, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1), st.integers(1, n))))
def test_pass_at_k_grows_with_correct_samples(args: tuple[int, int, int]) -> None:
    n, c, k = args
    assert pass_at_k(n, c + 1, k) >= pass_at_k(n, c, k) - 1e-12


@given(st.integers(2, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n - 1))))
def test_pass_at_k_grows_with_k(args: tuple[int, int, int]) -> None:
    n, c, k = args
    assert pass_at_k(n, c, k + 1) >= pass_at_k(n, c, k) - 1e-12


def test_mean_pass_at_k_averages_tasks() -> None:
    outcomes = {"a": [True, False, False], "b": [False, False, False], "c": [True, True, True]}
    # pass@1: (1/3 + 0 + 1)/3; pass@2: (2/3 + 0 + 1)/3
    assert mean_pass_at_k(outcomes, [2, 1]) == pytest.approx({"pass@1": 4 / 9, "pass@2": 5 / 9})


def test_mean_pass_at_k_names_the_task_with_too_few_samples() -> None:
    with pytest.raises(ValueError, match=r"task HumanEval/7: pass@10 needs at least 10 samples, got n=3"):
        mean_pass_at_k({"HumanEval/0": [True] * 20, "HumanEval/7": [True] * 3}, [1, 10])
