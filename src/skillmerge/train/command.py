"""``skillmerge train``: flags (and an optional CONFIG.yaml) → :class:`TrainConfig` → ``train.run``.

Precedence: ``--preset`` (or the YAML's ``preset:``) < YAML fields < flags. Only flags given on the command
line override; the rest come from the YAML or the preset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def train_command(
    config: Annotated[
        Path | None, typer.Argument(help="Training YAML (fields of TrainConfig; flags override it).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Base model directory (HF format).")] = None,
    data: Annotated[
        list[str] | None,
        typer.Option("--data", help="Chat data file (JSONL/CSV/Parquet) or a mixture YAML; repeatable."),
    ] = None,
    out: Annotated[str | None, typer.Option("--out", help="Output directory (model or adapter).")] = None,
    validation: Annotated[
        list[str] | None, typer.Option("--validation", help="Validation chat file; repeatable.")
    ] = None,
    template: Annotated[str | None, typer.Option(help="Chat template: model, chatml or tulu.")] = None,
    max_len: Annotated[int | None, typer.Option("--max-len", help="Maximum tokens per example.")] = None,
    packing: Annotated[
        bool | None, typer.Option("--packing/--bucketing", help="Pack examples or bucket by length.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the data.")] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Optimizer steps (overrides --epochs).")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Examples per device per micro-batch.")
    ] = None,
    grad_accum: Annotated[
        int | None, typer.Option("--grad-accum", help="Gradient accumulation steps.")
    ] = None,
    effective_batch: Annotated[
        int | None,
        typer.Option("--effective-batch", help="Examples per optimizer step (sets --grad-accum)."),
    ] = None,
    warmup_ratio: Annotated[
        float | None, typer.Option("--warmup-ratio", help="Warmup fraction of the steps.")
    ] = None,
    weight_decay: Annotated[float | None, typer.Option("--weight-decay", help="AdamW weight decay.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (data order, initialisation of LoRA).")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 or bf16 (autocast).")] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing", help="Recompute activations.")
    ] = None,
    save_steps: Annotated[
        int | None, typer.Option("--save-steps", help="Checkpoint every K optimizer steps.")
    ] = None,
    eval_steps: Annotated[
        int | None, typer.Option("--eval-steps", help="Validation loss every N steps.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    lora: Annotated[bool | None, typer.Option("--lora", help="Train LoRA adapters, not all weights.")] = None,
    lora_r: Annotated[int | None, typer.Option("--lora-r", help="LoRA rank r.")] = None,
    lora_alpha: Annotated[float | None, typer.Option("--lora-alpha", help="LoRA alpha (scale α/r).")] = None,
    lora_save: Annotated[str | None, typer.Option("--lora-save", help="adapter, merged or both.")] = None,
    preset: Annotated[str | None, typer.Option(help="Preset: cpu-small (default) or paper.")] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Log lines instead of a progress bar.")
    ] = False,
) -> None:
    """Supervised finetuning (full or LoRA) on chat data; loss on assistant tokens only."""
    from skillmerge.train import run
    from skillmerge.train.config import build_train_config, merge_fields, read_config_yaml

    fields: dict[str, Any] = read_config_yaml(config) if config is not None else {}
    flags: dict[str, Any] = {
        "preset": preset,
        "model": model,
        "out": out,
        "epochs": epochs,
        "max_steps": max_steps,
        "lr": lr,
        "batch_size": batch_size,
        "warmup_ratio": warmup_ratio,
        "weight_decay": weight_decay,
        "seed": seed,
        "precision": precision,
        "gradient_checkpointing": gradient_checkpointing,
        "save_steps": save_steps,
        "eval_steps": eval_steps,
        "data": {
            "files": data or None,
            "validation": validation or None,
            "template": template,
            "max_len": max_len,
            "packing": packing,
        },
        "lora": {"enabled": lora, "r": lora_r, "alpha": lora_alpha, "save": lora_save},
    }
    # The two ways to size the effective batch exclude each other: a flag for one clears the other.
    if grad_accum is not None:
        flags.update(grad_accum=grad_accum, effective_batch_size=None)
    if effective_batch is not None:
        flags.update(effective_batch_size=effective_batch, grad_accum=None)
    given = _drop_none(flags)
    if resume:
        given["resume"] = True
    if overwrite:
        given["overwrite"] = True
    if no_progress:
        given["progress"] = False
    where = str(config) if config is not None else "train"
    result = run(build_train_config(merge_fields(fields, given), where=where))
    from accelerate import PartialState

    if PartialState().is_main_process:  # under `accelerate launch` every process gets here
        typer.echo(f"wrote {result.out} (final loss {result.final_loss:.4f})")


_CLEARABLE = ("grad_accum", "effective_batch_size")


def _drop_none(tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if value:
                out[key] = value
        elif value is not None or key in _CLEARABLE:  # these are only present when a flag set them
            out[key] = value
    return out
