"""The SFT recipe: one readable loop on ``accelerate`` (single device, DDP, FSDP or DeepSpeed ZeRO-3).

    1. refuse a bad output/checkpoint situation before any work
    2. accelerator, seed, model + tokenizer, tokenized data, batch schedule
    3. LoRA (optional), gradient checkpointing (optional), AdamW + linear schedule
    4. resume from the newest checkpoint (optional)
    5. loop over optimizer steps: this process's micro-batches → loss → backward → clip → step; log, save
       (the output head sees only target positions: :mod:`skillmerge.train.head`)
    6. write the model (or adapter) atomically with manifest.json (config, inputs, versions, seed, cost)

Loss normalisation: the loss of an optimizer step is the mean over every target token of the whole
effective batch (all accumulation steps and all processes),

    L = Σ_{micro-batches m} Σ_{targets t ∈ m} CE_t  /  N_targets(step)

Each micro-batch backpropagates ``P · Σ_t CE_t / N_targets(step)``; DDP averages gradients over the P
processes, which cancels the P. ``N_targets(step)`` is known on every process without communication
because the batch schedule is a pure function of the step (see :mod:`skillmerge.train.data`). So 1 process
with A accumulation steps and P processes with A/P give the same gradients up to float summation order.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm

from skillmerge.data.packing import collate_padded
from skillmerge.errors import OutputExistsError, UsageError
from skillmerge.models.fingerprint import checkpoint_fingerprint, file_fingerprint
from skillmerge.models.io import load_model, save_model
from skillmerge.train.checkpoint import (
    check_same_run,
    drop_frozen_weights,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_trainer_state,
    save_checkpoint,
)
from skillmerge.train.config import TrainConfig
from skillmerge.train.cost import TrainCost, count_params
from skillmerge.train.data import BatchSchedule, prepare_data, validation_batches
from skillmerge.train.head import TargetHead, token_loss_sum
from skillmerge.train.lora import apply_lora, save_adapter_dir, write_adapter
from skillmerge.train.schedule import make_scheduler

METRICS_FILE = "metrics.jsonl"


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
    # 1. Refuse before any work: the output exists, or an earlier run left checkpoints.
    out, ckpt_dir = Path(config.out), config.checkpoint_path
    if out.exists() and not config.overwrite:
        raise OutputExistsError(f"{out}: output exists (pass --overwrite to replace it)")
    if not config.resume and list_checkpoints(ckpt_dir) and not config.overwrite:
        raise UsageError(
            f"{ckpt_dir}: checkpoints of an earlier run exist; pass --resume to continue it "
            "or --overwrite to start over"
        )

    # 2. Accelerator, seed, model, data.
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
    processes = accelerator.num_processes
    grad_accum = config.grad_accum_for(processes)
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
    )
    if batches.steps_per_epoch == 0:
        what = "packed rows" if config.data.packing else "examples"
        raise UsageError(
            f"{len(batches.units)} {what} are fewer than one effective batch of {effective_batch} "
            f"({processes} processes × {grad_accum} accumulation × batch {config.batch_size}); "
            "lower --batch-size or --grad-accum"
        )
    total_steps = config.max_steps or config.epochs * batches.steps_per_epoch

    # 3. LoRA, gradient checkpointing, optimizer, schedule.
    if config.lora.enabled:
        if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            raise UsageError("lora: LoRA under FSDP/DeepSpeed is not supported yet; use DDP (ddp.yaml)")
        model = apply_lora(model, config.lora)
    if config.freeze:
        _freeze(model, config.freeze)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    cost = TrainCost()
    cost.total_params, cost.trainable_params = count_params(model)
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay),
        lr=config.lr,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        fused=_fused_adamw(model),
    )
    scheduler = make_scheduler(optimizer, config.schedule, total_steps, config.warmup_ratio)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped by us, once per optimizer step
    head = TargetHead(accelerator.unwrap_model(model))  # logits at target positions only
    if config.lora.enabled or config.freeze:  # frozen weights come from the start model on resume
        accelerator.register_save_state_pre_hook(drop_frozen_weights)
    log(
        f"model: {cost.total_params:,} parameters, {cost.trainable_params:,} trainable; "
        f"{processes} process(es) × batch {config.batch_size} × accumulation {grad_accum} = effective "
        f"batch {effective_batch}; {total_steps} steps "
        f"({batches.steps_per_epoch} per epoch)"
    )

    # 4. Resume.
    start_step, metrics_lines = 0, 0
    if config.resume:
        path = latest_checkpoint(ckpt_dir)
        if path is None:
            raise UsageError(f"{ckpt_dir}: --resume given but there is no checkpoint to resume from")
        check_same_run(path, read_trainer_state(path)["trajectory"], config.trajectory())
        state = load_checkpoint(accelerator, path, adapter_only=config.lora.enabled or bool(config.freeze))
        start_step, metrics_lines = state["step"], state["metrics_lines"]
        cost = TrainCost.from_dict(state["cost"])
        log(f"resumed from {path} at step {start_step}")
    elif accelerator.is_main_process and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)  # --overwrite: the old run's checkpoints would be mistaken for ours
    metrics = _MetricsLog(
        ckpt_dir / "metrics.jsonl", keep_lines=metrics_lines, active=accelerator.is_main_process
    )

    # 5. The loop.
    progress = tqdm(
        total=total_steps,
        initial=start_step,
        disable=not (config.progress and accelerator.is_local_main_process),
        desc="train",
        dynamic_ncols=True,
    )
    loss = float("nan")
    val_loss: float | None = None
    for step in range(start_step, total_steps):
        started = time.perf_counter()
        counts = batches.counts(step, processes)  # the whole effective batch, every process
        n_targets = counts["loss_tokens"]
        mine = batches.micro_batches(step, accelerator.process_index, processes)
        loss_sum = torch.zeros((), device=accelerator.device)
        for i, batch_indices in enumerate(mine):
            batch = {
                k: v.to(accelerator.device)
                for k, v in batches.collate(batch_indices).items()
                if v is not None
            }
            labels = batch.pop("labels")
            # Gradients are all-reduced only on the last micro-batch of the step.
            sync = nullcontext() if i == len(mine) - 1 else accelerator.no_sync(model)
            with sync, head.targets(labels):
                logits = model(**batch, use_cache=False).logits
                summed = token_loss_sum(logits, labels)
                accelerator.backward(summed * processes / max(1, n_targets))
            loss_sum += summed.detach()
        grad_norm = None
        if config.max_grad_norm is not None:
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm))
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        loss = float(accelerator.reduce(loss_sum, reduction="sum")) / max(1, n_targets)
        seconds = time.perf_counter() - started
        cost.add_step(
            examples=counts["examples"],
            tokens=counts["tokens"],
            padded_tokens=counts["padded_tokens"],
            loss_tokens=n_targets,
        )
        cost.wall_seconds += seconds
        record: dict[str, Any] = {
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
        if data.validation and config.eval_steps and (step + 1) % config.eval_steps == 0:
            val_loss = record["val_loss"] = _validation_loss(
                accelerator, model, batches, data.validation, config, head
            )
        metrics.write(record)
        if config.report_to:
            accelerator.log({k: v for k, v in record.items() if isinstance(v, float | int)}, step=step + 1)
        _show_step(progress, record, total_steps, log if (step + 1) % config.log_steps == 0 else None)
        if config.save_steps and (step + 1) % config.save_steps == 0 and step + 1 < total_steps:
            cost.finish()
            trainer_state = {
                "trajectory": config.trajectory(),
                "cost": cost.to_dict(),
                "metrics_lines": metrics.lines,
            }
            save_checkpoint(accelerator, ckpt_dir, step + 1, trainer_state, config.save_total_limit)
    progress.close()
    if data.validation and not (config.eval_steps and total_steps % config.eval_steps == 0):
        val_loss = _validation_loss(accelerator, model, batches, data.validation, config, head)
        log(f"validation loss {val_loss:.4f}")
    cost.finish()
    log(
        f"done: {cost.optimizer_steps} steps, {cost.tokens:,} tokens ({cost.loss_tokens:,} loss tokens), "
        f"{cost.flops:.3e} FLOPs in {cost.wall_seconds:.1f}s; final loss {loss:.4f}"
    )

    # 6. Write the result atomically, then drop the checkpoints (the run is complete).
    manifest = {
        "kind": "train",
        "config": config.model_dump(mode="json"),
        "seed": config.seed,
        "inputs": _input_fingerprints(config, data.input_files) if accelerator.is_main_process else {},
        "data": {
            "train": data.stats.to_dict(),
            "validation": data.val_stats.to_dict() if data.val_stats else None,
        },
        "processes": processes,
        "grad_accum": grad_accum,
        "effective_batch_size": effective_batch,
        "final_loss": loss,
        "val_loss": val_loss,
        "cost": cost.to_dict(),
    }
    _save_output(accelerator, model, tokenizer, config, manifest, metrics.path)
    if accelerator.is_main_process:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    accelerator.end_training()
    return TrainResult(out, loss, val_loss, cost, total_steps)


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
def _validation_loss(
    accelerator: Accelerator,
    model: torch.nn.Module,
    batches: BatchSchedule,
    examples: list,
    config: TrainConfig,
    head: TargetHead,
) -> float:
    """Mean target-token loss over the validation set, each process taking every P-th bucket."""
    model.eval()
    pad = batches.pad_id
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)  # [Σ CE, N targets]
    for batch_indices in validation_batches(examples, config.batch_size)[
        accelerator.process_index :: accelerator.num_processes
    ]:
        batch = {
            k: v.to(accelerator.device)
            for k, v in collate_padded([examples[i] for i in batch_indices], pad_id=pad).items()
            if v is not None
        }
        labels = batch.pop("labels")
        with head.targets(labels):
            logits = model(**batch, use_cache=False).logits
        total[0] += token_loss_sum(logits, labels).double()
        total[1] += (labels[:, 1:] != -100).sum()
    model.train()
    total = accelerator.reduce(total, reduction="sum")
    return float(total[0] / total[1].clamp(min=1))


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


def _input_fingerprints(config: TrainConfig, files: list[Path]) -> dict[str, str]:
    inputs = {f"model:{config.model}": checkpoint_fingerprint(config.model)}
    for path in files:
        inputs[str(path)] = file_fingerprint(path)
    return inputs


def _save_output(
    accelerator: Accelerator,
    model: torch.nn.Module,
    tokenizer: Any,
    config: TrainConfig,
    manifest: dict[str, Any],
    metrics_path: Path,
) -> None:
    """Model directory (full FT / merged LoRA) or adapter directory, written by the main process only."""
    accelerator.wait_for_everyone()
    state_dict = None
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        state_dict = accelerator.get_state_dict(model)  # collective: gathers the shards on the main process
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return
    unwrapped = accelerator.unwrap_model(model)
    if state_dict is not None:  # the wrapped model holds shards: rebuild a plain one from the gathered state
        unwrapped = type(unwrapped)(unwrapped.config)
        unwrapped.load_state_dict(state_dict)
    extra = {METRICS_FILE: metrics_path.read_text(encoding="utf-8") if metrics_path.exists() else ""}
    out = Path(config.out)
    if not config.lora.enabled:
        save_model(
            unwrapped, tokenizer, out, overwrite=config.overwrite, manifest=manifest, extra_files=extra
        )
    elif config.lora.save == "adapter":
        save_adapter_dir(
            unwrapped,
            tokenizer,
            out,
            base_model=config.model,
            overwrite=config.overwrite,
            manifest=manifest,
            extra_files=extra,
        )
    else:
        if config.lora.save == "both":  # the adapter rides along in out/adapter/
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                write_adapter(unwrapped, Path(tmp), base_model=config.model)
                for file in Path(tmp).iterdir():
                    extra[f"adapter/{file.name}"] = file.read_bytes()
        merged = unwrapped.merge_and_unload()
        save_model(merged, tokenizer, out, overwrite=config.overwrite, manifest=manifest, extra_files=extra)
    accelerator.wait_for_everyone()


class _MetricsLog:
    """Append-only JSONL of per-step metrics; on resume, lines after the checkpoint are dropped."""

    def __init__(self, path: Path, *, keep_lines: int, active: bool) -> None:
        self.path, self.lines, self.active = path, keep_lines, active
        if not active:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = path.read_text(encoding="utf-8").splitlines()[:keep_lines] if path.exists() else []
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.lines += 1
        if self.active:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
