"""What a finished training run writes: the model (or adapter) directory with manifest.json, atomically."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedType

from skillmerge.models.fingerprint import checkpoint_fingerprint, file_fingerprint
from skillmerge.models.io import save_model
from skillmerge.train.lora import save_adapter_dir, write_adapter
from skillmerge.train.metrics import METRICS_FILE
from skillmerge.train.prepare import TrainState


def write_outputs(state: TrainState, loss: float, val_loss: float | None) -> None:
    """The output directory (main process only), then the checkpoints go: the run is complete."""
    config, accelerator, data = state.config, state.accelerator, state.data
    manifest = {
        "kind": "train",
        "config": config.model_dump(mode="json"),
        "seed": config.seed,
        "inputs": _input_fingerprints(config.model, data.input_files) if accelerator.is_main_process else {},
        "data": {
            "train": data.stats.to_dict(),
            "validation": data.val_stats.to_dict() if data.val_stats else None,
        },
        "processes": state.processes,
        "threads": torch.get_num_threads(),  # torch threads per process: what the wall time was bought with
        "grad_accum": state.grad_accum,
        "effective_batch_size": state.effective_batch,
        "final_loss": loss,
        "val_loss": val_loss,
        "cost": state.cost.to_dict(),
    }
    _save_output(state, manifest)
    if accelerator.is_main_process:
        shutil.rmtree(config.checkpoint_path, ignore_errors=True)


def _input_fingerprints(model: str, files: list[Path]) -> dict[str, str]:
    inputs = {f"model:{model}": checkpoint_fingerprint(model)}
    for path in files:
        inputs[str(path)] = file_fingerprint(path)
    return inputs


def _save_output(state: TrainState, manifest: dict[str, Any]) -> None:
    """Model directory (full FT / merged LoRA) or adapter directory, written by the main process only."""
    accelerator, config, model, tokenizer = state.accelerator, state.config, state.model, state.tokenizer
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
    metrics_path = state.metrics.path
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
            with tempfile.TemporaryDirectory() as tmp:
                write_adapter(unwrapped, Path(tmp), base_model=config.model)
                for file in Path(tmp).iterdir():
                    extra[f"adapter/{file.name}"] = file.read_bytes()
        merged = unwrapped.merge_and_unload()
        save_model(merged, tokenizer, out, overwrite=config.overwrite, manifest=manifest, extra_files=extra)
    accelerator.wait_for_everyone()
