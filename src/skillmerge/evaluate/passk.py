"""pass@k: the chance that at least one of k samples drawn from n (c of them correct) passes.

The unbiased estimator of Chen et al. (2021), from ``n`` samples with ``c`` correct:

    pass@k = 1 − C(n−c, k) / C(n, k) = 1 − ∏_{i=n−c+1}^{n} (1 − k / i)

The product form avoids the huge binomials (C(200, 100) ≈ 9·10⁵⁸) and their cancellation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task; ``1.0`` when every k-subset holds a correct sample (n − c < k)."""
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and n >= 1 (got n={n}, c={c})")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n samples (got n={n})")
    if n - c < k:
        return 1.0
    miss = 1.0  # probability that k samples drawn without replacement are all wrong
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def mean_pass_at_k(outcomes: Mapping[str, Sequence[bool]], ks: Iterable[int]) -> dict[str, float]:
    """``{"pass@k": mean over tasks}`` from each task's per-sample pass/fail list.

    Raises :class:`ValueError` naming the first task with fewer than ``k`` samples.
    """
    ks = sorted(set(ks))
    if not outcomes:
        raise ValueError("pass@k over no tasks")
    for task, results in outcomes.items():
        for k in ks:
            if len(results) < k:
                raise ValueError(f"task {task}: pass@{k} needs at least {k} samples, got n={len(results)}")
    return {
        f"pass@{k}": sum(pass_at_k(len(r), sum(map(bool, r)), k) for r in outcomes.values()) / len(outcomes)
        for k in ks
    }
