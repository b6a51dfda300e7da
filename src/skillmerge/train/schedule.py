"""Learning-rate schedules as pure multipliers of the peak rate.

Linear warmup then linear decay to 0 (the paper's schedule, as in transformers'
``get_linear_schedule_with_warmup``), for optimizer step ``s`` (0-based, the step about to be taken), ``T``
total steps and ``W = ceil(warmup_ratio · T)`` warmup steps:

    m(s) = s / W                     for s < W
    m(s) = max(0, (T − s) / (T − W)) otherwise

``constant`` keeps the same warmup and then ``m(s) = 1``.
"""

from __future__ import annotations

import math
from functools import partial

import torch


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """``ceil(warmup_ratio · total_steps)``."""
    return math.ceil(warmup_ratio * total_steps)


def linear_multiplier(step: int, total_steps: int, warmup: int) -> float:
    """m(s) of the linear schedule (module docstring)."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def constant_multiplier(step: int, total_steps: int, warmup: int) -> float:
    """Warmup, then 1."""
    return step / max(1, warmup) if step < warmup else 1.0


SCHEDULES = {"linear": linear_multiplier, "constant": constant_multiplier}


def make_scheduler(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepping once per optimizer step; its ``state_dict`` is checkpointed."""
    multiplier = partial(
        SCHEDULES[name], total_steps=total_steps, warmup=warmup_steps(total_steps, warmup_ratio)
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
