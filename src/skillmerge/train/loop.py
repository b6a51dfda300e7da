"""The training loop: optimizer steps over a prepared :class:`~skillmerge.train.prepare.TrainState`.

Loss normalisation: the loss of an optimizer step is the mean over every target token of the whole
effective batch (all accumulation steps and all processes),

    L = Σ_{micro-batches m} Σ_{targets t ∈ m} CE_t  /  N_targets(step)

Each micro-batch backpropagates ``P · Σ_t CE_t / N_targets(step)``; DDP averages gradients over the P
processes, which cancels the P. ``N_targets(step)`` is known on every process without communication
because the batch schedule is a pure function of the step (see :mod:`skillmerge.train.data`). So 1 process
with A accumulation steps and P processes with A/P give the same gradients up to float summation order.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import torch
from tqdm.auto import tqdm

from skillmerge.data.packing import collate_padded
from skillmerge.train.checkpoint import save_checkpoint
from skillmerge.train.data import validation_batches
from skillmerge.train.head import token_loss_sum
from skillmerge.train.prepare import TrainState


def run_steps(state: TrainState) -> tuple[float, float | None]:
    """Steps ``start_step … total_steps``: train, log, validate, checkpoint. Returns (last loss, val loss)."""
    config = state.config
    progress = tqdm(
        total=state.total_steps,
        initial=state.start_step,
        disable=not (config.progress and state.accelerator.is_local_main_process),
        desc="train",
        dynamic_ncols=True,
    )
    loss, val_loss = float("nan"), None
    for step in range(state.start_step, state.total_steps):
        record = train_step(state, step)
        loss = record["loss"]
        if state.data.validation and config.eval_steps and (step + 1) % config.eval_steps == 0:
            val_loss = record["val_loss"] = validation_loss(state)
        state.metrics.write(record)
        if config.report_to:
            numbers = {k: v for k, v in record.items() if isinstance(v, float | int)}
            state.accelerator.log(numbers, step=step + 1)
        _show_step(
            progress, record, state.total_steps, state.log if (step + 1) % config.log_steps == 0 else None
        )
        if config.save_steps and (step + 1) % config.save_steps == 0 and step + 1 < state.total_steps:
            _checkpoint(state, step + 1)
    progress.close()
    if state.data.validation and not (config.eval_steps and state.total_steps % config.eval_steps == 0):
        val_loss = validation_loss(state)
        state.log(f"validation loss {val_loss:.4f}")
    return loss, val_loss


def train_step(state: TrainState, step: int) -> dict[str, Any]:
    """One optimizer step: this process's micro-batches → loss → backward → clip → step; its metrics."""
    accelerator, model, batches, config = state.accelerator, state.model, state.batches, state.config
    started = time.perf_counter()
    counts = batches.counts(step, state.processes)  # the whole effective batch, every process
    n_targets = counts["loss_tokens"]
    mine = batches.micro_batches(step, accelerator.process_index, state.processes)
    loss_sum = torch.zeros((), device=accelerator.device)
    for i, batch_indices in enumerate(mine):
        batch = {
            k: v.to(accelerator.device) for k, v in batches.collate(batch_indices).items() if v is not None
        }
        labels = batch.pop("labels")
        # Gradients are all-reduced only on the last micro-batch of the step.
        sync = nullcontext() if i == len(mine) - 1 else accelerator.no_sync(model)
        with sync, state.head.targets(labels):
            logits = model(**batch, use_cache=False).logits
            summed = token_loss_sum(logits, labels)
            accelerator.backward(summed * state.processes / max(1, n_targets))
        loss_sum += summed.detach()
    grad_norm = None
    if config.max_grad_norm is not None:
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm))
    lr = state.scheduler.get_last_lr()[0]
    state.optimizer.step()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)

    loss = float(accelerator.reduce(loss_sum, reduction="sum")) / max(1, n_targets)
    seconds = time.perf_counter() - started
    cost = state.cost
    cost.add_step(
        examples=counts["examples"],
        tokens=counts["tokens"],
        padded_tokens=counts["padded_tokens"],
        loss_tokens=n_targets,
    )
    cost.wall_seconds += seconds
    return {
        "step": step + 1,
        "epoch": round((step + 1) / batches.steps_per_epoch, 4),
        "loss": loss,
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens": counts["tokens"],
        "padded_tokens": counts["padded_tokens"],
        "loss_tokens": n_targets,
        "micro_batches": counts["micro_batches"],
        "tokens_per_s": counts["tokens"] / seconds,
        "loss_tokens_per_s": n_targets / seconds,
        "flops_per_s": cost.flops / cost.wall_seconds,
        "seconds": seconds,
    }


def _checkpoint(state: TrainState, step: int) -> None:
    state.cost.finish()
    trainer_state = {
        "trajectory": state.config.trajectory(),
        "cost": state.cost.to_dict(),
        "metrics_lines": state.metrics.lines,
    }
    config = state.config
    save_checkpoint(state.accelerator, config.checkpoint_path, step, trainer_state, config.save_total_limit)


def _show_step(progress: tqdm, record: dict[str, Any], total_steps: int, log: Any) -> None:
    """Progress bar postfix (ETA comes from tqdm); a plain log line when the bar is off."""
    progress.update(1)
    progress.set_postfix(
        loss=f"{record['loss']:.4f}",
        lr=f"{record['lr']:.2e}",
        tok_s=f"{record['tokens_per_s']:.0f}",
        TFLOPs=f"{record['flops_per_s'] / 1e12:.3f}",
        refresh=False,
    )
    if progress.disable and log is not None:
        log(
            f"step {record['step']}/{total_steps} loss {record['loss']:.4f} lr {record['lr']:.2e} "
            f"{record['tokens_per_s']:.0f} tok/s {record['flops_per_s'] / 1e12:.4f} TFLOP/s"
        )


@torch.no_grad()
def validation_loss(state: TrainState) -> float:
    """Mean target-token loss over the validation set, each process taking every P-th bucket."""
    accelerator, model, examples = state.accelerator, state.model, state.data.validation
    model.eval()
    pad = state.batches.pad_id
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)  # [Σ CE, N targets]
    for batch_indices in validation_batches(examples, state.config.batch_size)[
        accelerator.process_index :: accelerator.num_processes
    ]:
        batch = {
            k: v.to(accelerator.device)
            for k, v in collate_padded([examples[i] for i in batch_indices], pad_id=pad).items()
            if v is not None
        }
        labels = batch.pop("labels")
        with state.head.targets(labels):
            logits = model(**batch, use_cache=False).logits
        total[0] += token_loss_sum(logits, labels).double()
        total[1] += (labels[:, 1:] != -100).sum()
    model.train()
    total = accelerator.reduce(total, reduction="sum")
    return float(total[0] / total[1].clamp(min=1))
