"""LoRA adapters with peft: wrap a model, and write the adapter directory.

A LoRA layer replaces ``W x`` by ``W x + s·B A x`` with ``A ∈ R^{r×k}``, ``B ∈ R^{d×r}`` (B starts at 0) and
scale ``s = α/r``, or ``s = α/√r`` with rsLoRA (rank-stabilised: the update's size stays level as r grows).
Only ``A`` and ``B`` train. Target modules are matched by peft as a module name or a dotted-name suffix
(``q_proj`` matches ``model.layers.0.self_attn.q_proj``); targets that match nothing are refused up front,
because peft would otherwise train fewer layers than asked for without saying so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, TaskType, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from skillmerge.atomic import atomic_dir
from skillmerge.errors import UsageError
from skillmerge.models.io import MANIFEST_FILE, library_versions
from skillmerge.train.config import LoraConfig


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def check_targets(model: torch.nn.Module, targets: list[str]) -> None:
    """Raise naming every target that matches no module of ``model`` (and the linear layers it has)."""
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(_matches(name, t) for name in names)]
    if missing:
        linear = sorted(
            {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        )
        raise UsageError(
            f"lora.target_modules: {', '.join(missing)} match no module of the model; "
            f"its linear layers are: {', '.join(linear)}"
        )


def apply_lora(model: PreTrainedModel, lora: LoraConfig) -> PeftModel:
    """Freeze ``model`` and add LoRA adapters on ``lora.target_modules`` (initialised from torch's RNG)."""
    check_targets(model, lora.target_modules)
    config = PeftLoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        use_rslora=lora.rslora,
    )
    return get_peft_model(model, config)


def save_adapter_dir(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: str | Path,
    *,
    base_model: str,
    overwrite: bool = False,
    manifest: dict[str, Any] | None = None,
    extra_files: dict[str, str | bytes] | None = None,
) -> Path:
    """Write the adapter (``adapter_config.json``, ``adapter_model.safetensors``), tokenizer and manifest.

    The directory appears atomically; ``PeftModel.from_pretrained(base, out_dir)`` loads it, with
    ``base_model_name_or_path`` set to ``base_model``.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        write_adapter(model, tmp, base_model=base_model)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, content in (extra_files or {}).items():
            target = tmp / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        record = dict(manifest or {})
        record.setdefault("library_versions", {**library_versions(), **_peft_version()})
        (tmp / MANIFEST_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return out_dir


def write_adapter(model: PeftModel, directory: Path, *, base_model: str) -> None:
    """peft's adapter files into ``directory``, pointing at ``base_model``."""
    model.save_pretrained(directory)
    config_path = directory / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_model
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _peft_version() -> dict[str, str]:
    import peft

    return {"peft": peft.__version__}
