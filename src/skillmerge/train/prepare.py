"""Everything a training run needs before its first step, gathered in one :class:`TrainState`.

    1. refuse a bad output/checkpoint situation before any work
    2. accelerator, seed, model + tokenizer, tokenized data, batch schedule
    3. LoRA (optional), frozen weights (optional), gradient checkpointing (optional), AdamW + schedule
    4. resume from the newest checkpoint (``--resume``; with none yet, start from step 0 and say so)

The order is part of the result: each stage draws from the seeded RNG (LoRA initialisation, dropout), so a
resumed run equals an uninterrupted one bit for bit only if this order never changes.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed

from skillmerge.allocator import keep_freed_memory
from skillmerge.errors import OutputExistsError, UsageError
from skillmerge.models.io import load_model
from skillmerge.train.checkpoint import (
    check_same_run,
    drop_frozen_weights,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_trainer_state,
)
from skillmerge.train.config import TrainConfig
from skillmerge.train.cost import TrainCost, count_params
from skillmerge.train.data import BatchSchedule, TrainData, prepare_data
from skillmerge.train.head import TargetHead
from skillmerge.train.lora import apply_lora
from skillmerge.train.metrics import MetricsLog
from skillmerge.train.schedule import make_scheduler


@dataclass
class TrainState:
    """A run ready to step: the prepared model and optimizer, the data and where the loop starts."""

    config: TrainConfig
    accelerator: Accelerator
    model: torch.nn.Module
    tokenizer: Any
    data: TrainData
    batches: BatchSchedule
    optimizer: torch.optim.Optimizer
    scheduler: Any
    head: TargetHead
    cost: TrainCost
    metrics: MetricsLog
    grad_accum: int
    total_steps: int
    start_step: int = 0

    @property
    def processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def effective_batch(self) -> int:
        return self.processes * self.grad_accum * self.config.batch_size

    def log(self, message: str) -> None:
        self.accelerator.print(message)


def prepare(config: TrainConfig) -> TrainState:
    """Stages 1-4 of the module docstring, in that order."""
    refuse_existing_outputs(config)
    keep_freed_memory()  # every step frees and reallocates the same buffers (skillmerge.allocator)
    accelerator = _make_accelerator(config)
    log = accelerator.print
    set_seed(config.seed)
    model, tokenizer = load_model(config.model)  # fp32 master weights; bf16 runs under autocast
    data = prepare_data(config.data, tokenizer)
    s = data.stats
    log(
        f"data: {s.n_examples} examples ({s.n_truncated} truncated, {s.n_dropped} dropped: no target "
        f"within max_len {config.data.max_len}), {s.n_tokens} tokens, {s.n_loss_tokens} loss tokens"
        + (f"; validation {len(data.validation)} examples" if data.validation else "")
    )
    grad_accum = config.grad_accum_for(accelerator.num_processes)
    batches = _batch_schedule(config, data, tokenizer, accelerator.num_processes, grad_accum)

    model = _trainable_model(config, model, accelerator)
    cost = TrainCost()
    cost.total_params, cost.trainable_params = count_params(model)
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay),
        lr=config.lr,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        fused=_fused_adamw(model),
    )
    total_steps = config.max_steps or config.epochs * batches.steps_per_epoch
    scheduler = make_scheduler(optimizer, config.schedule, total_steps, config.warmup_ratio)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped by us, once per optimizer step
    head = TargetHead(accelerator.unwrap_model(model))  # logits at target positions only
    if config.lora.enabled or config.freeze:  # frozen weights come from the start model on resume
        accelerator.register_save_state_pre_hook(drop_frozen_weights)
    log(
        f"model: {cost.total_params:,} parameters, {cost.trainable_params:,} trainable; "
        f"{accelerator.num_processes} process(es) × batch {config.batch_size} × accumulation {grad_accum} = "
        f"effective batch {batches.examples_per_step}; {total_steps} steps "
        f"({batches.steps_per_epoch} per epoch)"
    )
    start_step, cost, metrics = _resume_or_start(config, accelerator, cost)
    state = TrainState(
        config, accelerator, model, tokenizer, data, batches, optimizer, scheduler, head, cost, metrics,
        grad_accum=grad_accum, total_steps=total_steps, start_step=start_step,
    )  # fmt: skip
    return state


def refuse_existing_outputs(config: TrainConfig) -> None:
    """Stage 1: the output exists, or an earlier run left checkpoints that neither --resume nor --overwrite
    explains."""
    out, ckpt_dir = Path(config.out), config.checkpoint_path
    if out.exists() and not config.overwrite:
        raise OutputExistsError(f"{out}: output exists (pass --overwrite to replace it)")
    if not config.resume and list_checkpoints(ckpt_dir) and not config.overwrite:
        raise UsageError(
            f"{ckpt_dir}: checkpoints of an earlier run exist; pass --resume to continue it "
            "or --overwrite to start over"
        )


def _batch_schedule(
    config: TrainConfig, data: TrainData, tokenizer: Any, processes: int, grad_accum: int
) -> BatchSchedule:
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    effective_batch = processes * grad_accum * config.batch_size
    batches = BatchSchedule(
        data.train,
        batch_size=config.batch_size,
        examples_per_step=effective_batch,
        packing=config.data.packing,
        max_len=config.data.max_len,
        seed=config.seed,
        pad_id=pad_id if pad_id is not None else 0,
        max_tokens=config.data.micro_batch_tokens,
        overhead_tokens=config.data.micro_batch_overhead_tokens,
        padding_free=config.data.padding_free,
    )
    if batches.steps_per_epoch == 0:
        what = "packed rows" if config.data.packing else "examples"
        raise UsageError(
            f"{len(batches.units)} {what} are fewer than one effective batch of {effective_batch} "
            f"({processes} processes × {grad_accum} accumulation × batch {config.batch_size}); "
            "lower --batch-size or --grad-accum"
        )
    return batches


def _trainable_model(
    config: TrainConfig, model: torch.nn.Module, accelerator: Accelerator
) -> torch.nn.Module:
    """Stage 3 before the optimizer: LoRA adapters, frozen weights, gradient checkpointing, train mode."""
    if config.lora.enabled:
        if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            raise UsageError("lora: LoRA under FSDP/DeepSpeed is not supported yet; use DDP (ddp.yaml)")
        model = apply_lora(model, config.lora)
    if config.freeze:
        _freeze(model, config.freeze)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def _resume_or_start(
    config: TrainConfig, accelerator: Accelerator, cost: TrainCost
) -> tuple[int, TrainCost, MetricsLog]:
    """Stage 4: continue from the newest checkpoint, or start at step 0 (dropping an old run's checkpoints).

    Returns the first step to run, the cost so far and the metrics log (its lines past the checkpoint cut).
    """
    ckpt_dir = config.checkpoint_path
    start_step, metrics_lines = 0, 0
    path = latest_checkpoint(ckpt_dir) if config.resume else None
    if path is not None:
        check_same_run(path, read_trainer_state(path)["trajectory"], config.trajectory())
        saved = load_checkpoint(accelerator, path, adapter_only=config.lora.enabled or bool(config.freeze))
        start_step, metrics_lines = saved["step"], saved["metrics_lines"]
        cost = TrainCost.from_dict(saved["cost"])
        accelerator.print(f"resumed from {path} at step {start_step}")
    else:
        if config.resume:  # scripts pass --resume on every attempt; the first has nothing to resume
            accelerator.print(f"--resume: no checkpoint in {ckpt_dir} yet; starting from step 0")
        if accelerator.is_main_process and ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)  # --overwrite: the old run's checkpoints would be mistaken for ours
    metrics = MetricsLog(
        ckpt_dir / "metrics.jsonl", keep_lines=metrics_lines, active=accelerator.is_main_process
    )
    return start_step, cost, metrics


def _freeze(model: torch.nn.Module, patterns: list[str]) -> None:
    """Stop gradients for parameters whose name matches any of ``patterns`` (each must match something)."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise UsageError(f"freeze: {pattern!r} is not a regular expression ({err})") from None
    names = [name for name, _ in model.named_parameters()]
    for pattern, regex in zip(patterns, compiled, strict=True):
        if not any(regex.search(name) for name in names):
            raise UsageError(f"freeze: {pattern!r} matches no parameter (e.g. {names[0]!r})")
    for name, param in model.named_parameters():
        if any(regex.search(name) for regex in compiled):
            param.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise UsageError(f"freeze: {patterns} freezes every parameter; nothing would train")


def _fused_adamw(model: torch.nn.Module) -> bool:
    """Fused AdamW (one kernel for all tensors: ~6× faster steps on CPU) where every tensor allows it."""
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only (not norms and biases), the usual AdamW practice; frozen weights are left out."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def _make_accelerator(config: TrainConfig) -> Accelerator:
    # accelerate only uses gloo across CPU processes when told cpu=True; on a machine without CUDA that is
    # the only device anyway.
    for tracker in config.report_to:
        if not _installed({"tensorboard": "tensorboard", "wandb": "wandb"}[tracker]):
            raise UsageError(f"report_to: {tracker} is not installed (pip install {tracker})")
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision="bf16" if config.precision == "bf16" else "no",
        log_with=list(config.report_to) or None,
        project_dir=str(config.checkpoint_path) if config.report_to else None,
    )
    if config.report_to:
        accelerator.init_trackers("skillmerge-train", config=config.trajectory())
    return accelerator


def _installed(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None
