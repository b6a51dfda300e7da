"""Training configuration: one validated pydantic object, built from a preset, a YAML file and CLI flags.

Precedence (later wins): preset defaults → YAML fields → CLI flags. The effective batch is

    effective_batch = batch_size (per device) × grad_accum × processes

Give either ``grad_accum`` or ``effective_batch_size``; with the latter, ``grad_accum`` is derived at launch
time once the number of processes is known, and the effective batch must be divisible by
``processes × batch_size``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skillmerge.config_yaml import read_yaml_mapping
from skillmerge.errors import UsageError

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraConfig(BaseModel):
    """LoRA adapters (peft): ``W' = W + (α/r)·B·A``, or ``(α/√r)·B·A`` with rsLoRA."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Train LoRA adapters, not all weights.")
    r: int = Field(16, gt=0, description="LoRA rank r.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (scale α/r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS), description="Module names that get adapters."
    )
    rslora: bool = Field(False, description="Rank-stabilised scale α/√r.")
    save: Literal["adapter", "merged", "both"] = Field("adapter", description="What the output holds.")

    @field_validator("target_modules")
    @classmethod
    def _some_targets(cls, targets: list[str]) -> list[str]:
        if not targets:
            raise ValueError("at least one target module is needed")
        return targets


class DataConfig(BaseModel):
    """Where examples come from and how they become batches."""

    model_config = ConfigDict(extra="forbid")

    files: list[str] = Field(
        default_factory=list, description="Chat data file (JSONL/CSV/Parquet, hub:ID or a mixture YAML)."
    )
    mixture: str | None = Field(None, description="A mixture YAML, instead of or besides the files.")
    validation: list[str] = Field(default_factory=list, description="Held-out chat file for validation loss.")
    val_fraction: float | None = Field(
        None, gt=0.0, lt=1.0, description="Or: split this fraction off the training data for validation."
    )
    template: str = Field("model", description="Chat template: model, chatml or tulu.")
    max_len: int = Field(1024, gt=0, description="Maximum tokens per example.")
    packing: bool = Field(
        False, description="Pack examples into rows, or bucket them by length (faster on CPU)."
    )
    # Micro-batches (skillmerge.train.data): at most micro_batch_tokens padded tokens (default batch_size ×
    # max_len), cut to minimise padded tokens + micro_batch_overhead_tokens per extra forward/backward.
    micro_batch_tokens: int | None = Field(
        None, gt=0, description="Padded tokens per micro-batch at most (default batch size × max len)."
    )
    micro_batch_overhead_tokens: int = Field(
        32,
        ge=0,
        description="Cost of one more forward/backward, in padded tokens, when cutting micro-batches.",
    )
    padding_free: bool = Field(
        False,
        description="Lay each micro-batch's examples end to end in rows (block-diagonal attention): the "
        "same examples per step and the same loss, no padding, one forward/backward per micro-batch.",
    )
    skip_bad: bool = Field(False, description="Skip malformed data lines instead of stopping.")

    @model_validator(mode="after")
    def _one_layout(self) -> DataConfig:
        if self.packing and self.padding_free:
            raise ValueError("data.packing and data.padding_free are two layouts: choose one")
        return self


class TrainConfig(BaseModel):
    """Everything that defines a training run; ``trajectory_fields`` are the ones a resume must match.

    Each field's description is its ``skillmerge train`` flag's help (:mod:`skillmerge.train.command`).
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Start model directory (HF format).")
    out: str = Field(description="Output directory (model or adapter).")
    data: DataConfig = Field(default_factory=DataConfig)
    epochs: int = Field(1, gt=0, description="Passes over the data.")
    max_steps: int | None = Field(
        None, gt=0, description="Optimizer steps (overrides epochs; cycles the data when longer)."
    )
    lr: float = Field(1e-4, description="Peak learning rate.")
    schedule: Literal["linear", "constant"] = Field(
        "linear", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Warmup fraction of the steps.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay (matrices only).")
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW β1.")
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0, description="AdamW β2.")
    adam_eps: float = Field(1e-8, gt=0.0, description="AdamW ε.")
    max_grad_norm: float | None = Field(1.0, gt=0.0, description="Gradient clipping norm (null: none).")
    batch_size: int = Field(
        4, gt=0, description="Examples per device per micro-batch (packed rows when packing)."
    )
    grad_accum: int | None = Field(None, gt=0, description="Gradient accumulation steps.")
    effective_batch_size: int | None = Field(
        None, gt=0, description="Examples per optimizer step over all processes (sets grad accum)."
    )
    seed: int = Field(0, description="Seed (data order, initialisation of LoRA, dropout).")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="Precision (bf16: autocast).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward.")
    lora: LoraConfig = Field(default_factory=LoraConfig)
    # Regular expressions over parameter names (re.search); matching weights stay frozen in full finetuning,
    # e.g. ["embed_tokens", "layers\\.([0-9]|1[0-9])\\."] trains only layers 20+ and the norms: backward
    # then stops at the first trained layer, so training is cheaper (the task vector is zero elsewhere).
    freeze: list[str] = Field(
        default_factory=list, description="Regular expression of parameter names kept frozen."
    )
    save_steps: int | None = Field(None, gt=0, description="Checkpoint every K optimizer steps.")
    save_total_limit: int = Field(2, gt=0, description="Checkpoints kept (oldest removed).")
    checkpoint_dir: str | None = Field(None, description="Checkpoint folder (default: OUT.checkpoints).")
    eval_steps: int | None = Field(None, gt=0, description="Validation loss every N steps (and at the end).")
    log_steps: int = Field(1, gt=0, description="A log line every N steps when the progress bar is off.")
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list, description="Experiment tracker."
    )
    resume: bool = Field(False, description="Continue from the newest checkpoint (none yet: start fresh).")
    overwrite: bool = Field(False, description="Replace an existing output.")
    progress: bool = Field(True, description="A progress bar (else log lines).")

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, lr: float) -> float:
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        return lr

    @model_validator(mode="after")
    def _batch_is_consistent(self) -> TrainConfig:
        if self.grad_accum is not None and self.effective_batch_size is not None:
            raise ValueError("give grad_accum or effective_batch_size, not both")
        if self.effective_batch_size is not None and self.effective_batch_size % self.batch_size:
            raise ValueError(
                f"effective_batch_size {self.effective_batch_size} is not divisible by "
                f"batch_size {self.batch_size}"
            )
        return self

    def grad_accum_for(self, processes: int) -> int:
        """Accumulation steps with ``processes`` processes: ``effective / (processes × batch_size)``."""
        if self.effective_batch_size is None:
            return self.grad_accum or 1
        per_step = processes * self.batch_size
        if self.effective_batch_size % per_step:
            raise UsageError(
                f"effective_batch_size {self.effective_batch_size} is not divisible by processes × "
                f"batch_size = {processes} × {self.batch_size} = {per_step}"
            )
        return self.effective_batch_size // per_step

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(f"{self.out}.checkpoints")

    def trajectory(self) -> dict[str, Any]:
        """The fields that decide the sequence of weights; a checkpoint resumes only a run that matches."""
        skip = {
            "out",
            "resume",
            "overwrite",
            "progress",
            "save_steps",
            "save_total_limit",
            "checkpoint_dir",
            "eval_steps",
            "log_steps",
            "report_to",
        }
        if not self.freeze:  # nothing frozen: the same trajectory (and cache keys) as before the option
            skip.add("freeze")
        flat = _flatten(self.model_dump(mode="json", exclude=skip))
        if not self.data.padding_free:  # padded buckets: the same keys as before the option
            del flat["data.padding_free"]
        return flat


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Presets: partial configs (no model/out) that a YAML file or flags complete.
PRESETS: dict[str, dict[str, Any]] = {
    # Short CPU-friendly runs: tiny models, pipeline tests, the demo.
    "cpu-small": {
        "lr": 1e-4,
        "warmup_ratio": 0.03,
        "epochs": 1,
        "batch_size": 4,
        "grad_accum": 1,
        "data": {"max_len": 1024},
    },
    # The paper's recipe (Tulu-style SFT): AdamW, lr 2e-5, linear decay to 0, 3% warmup, no weight decay,
    # 2 epochs, effective batch 128, max length 4096, full finetuning.
    "paper": {
        "lr": 2e-5,
        "schedule": "linear",
        "warmup_ratio": 0.03,
        "weight_decay": 0.0,
        "epochs": 2,
        "batch_size": 1,
        "effective_batch_size": 128,
        "data": {"max_len": 4096},
        "lora": {"enabled": False},
    },
}
DEFAULT_PRESET = "cpu-small"


def preset_fields(name: str) -> dict[str, Any]:
    """A deep copy of preset ``name``'s fields."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return merge_fields({}, PRESETS[name])


# Fields that size the same thing: a layer that sets one clears the other from the layers below it.
EXCLUSIVE: tuple[tuple[str, str], ...] = (("grad_accum", "effective_batch_size"),)


def layer(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base`` (preset < YAML < --set < flags): :func:`merge_fields`, except that a field of
    an :data:`EXCLUSIVE` pair set in ``update`` clears its partner from ``base``."""
    base = dict(base)
    for a, b in EXCLUSIVE:
        for mine, other in ((a, b), (b, a)):
            if update.get(mine) is not None and other not in update:
                base.pop(other, None)
    return merge_fields(base, update)


def merge_fields(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``, recursing into nested sections (``data``, ``lora``)."""
    out = {k: (merge_fields({}, v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_fields(out[key], value)
        else:
            out[key] = value
    return out


def build_train_config(fields: dict[str, Any], *, where: str = "config") -> TrainConfig:
    """Validate ``fields`` over their ``preset``; errors are one line ``WHERE: field: problem``."""
    fields = dict(fields)
    preset = preset_fields(fields.pop("preset", None) or DEFAULT_PRESET)
    merged = layer(preset, fields)
    try:
        return TrainConfig.model_validate(merged)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")  # cross-field checks name their fields
        raise UsageError(f"{where}: {field}: {message}" if field else f"{where}: {message}") from None


def read_config_yaml(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a training YAML (not yet validated); unreadable or malformed files are one line."""
    return read_yaml_mapping(path, "training config")


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a YAML config (``preset:`` optional), apply ``overrides`` (nested dicts merge), validate."""
    return build_train_config(merge_fields(read_config_yaml(path), overrides), where=str(path))
