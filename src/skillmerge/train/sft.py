"""The SFT recipe on ``accelerate`` (single device, DDP, FSDP or DeepSpeed ZeRO-3), in three parts:

    prepare (:mod:`skillmerge.train.prepare`)  refuse bad outputs; accelerator, seed, model, data, batch
                                                schedule, LoRA / freezing, AdamW + schedule, resume
    loop    (:mod:`skillmerge.train.loop`)     optimizer steps: micro-batches → loss → backward → clip →
                                                step; log, validate, checkpoint (loss normalisation there)
    outputs (:mod:`skillmerge.train.outputs`)  the model or adapter with manifest.json, atomically

The output head sees only target positions (:mod:`skillmerge.train.head`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skillmerge.train.config import TrainConfig
from skillmerge.train.cost import TrainCost
from skillmerge.train.loop import run_steps
from skillmerge.train.outputs import write_outputs
from skillmerge.train.prepare import prepare


@dataclass
class TrainResult:
    """What :func:`train` made: the output directory, last losses and the cost record."""

    out: Path
    final_loss: float
    val_loss: float | None
    cost: TrainCost
    steps: int


def train(config: TrainConfig) -> TrainResult:
    """Run supervised finetuning as configured; returns on every process (only the main one writes)."""
    state = prepare(config)
    loss, val_loss = run_steps(state)
    cost = state.cost
    cost.finish()
    state.log(
        f"done: {cost.optimizer_steps} steps, {cost.tokens:,} tokens ({cost.loss_tokens:,} loss tokens), "
        f"{cost.flops:.3e} FLOPs in {cost.wall_seconds:.1f}s; final loss {loss:.4f}"
    )
    write_outputs(state, loss, val_loss)
    state.accelerator.end_training()
    return TrainResult(Path(config.out), loss, val_loss, cost, state.total_steps)
