"""What a training run cost: steps, examples, tokens, parameters, FLOPs, time and memory.

FLOPs count the dense matrix multiplies of the model (the usual "6·N·T" accounting; attention-score
FLOPs and recomputation from gradient checkpointing are not included), with ``N`` all parameters, ``N_t``
the trainable ones and ``T`` the real (non-padding) tokens processed:

    forward                          2·N·T
    backward, input gradients        2·N·T     (needed through every layer, frozen or not)
    backward, weight gradients       2·N_t·T   (only for trainable weights)
    total                            (4·N + 2·N_t)·T

Full finetuning (``N_t = N``) gives ≈ 6·N·T; LoRA (``N_t ≪ N``) gives ≈ 4·N·T: the frozen weights still pay
the forward and the input-gradient passes.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import asdict, dataclass

import torch

FLOPS_FORMULA = "(4*N + 2*N_trainable) * T  (= 6*N*T for full finetuning); T = non-padding tokens"


def training_flops(total_params: int, trainable_params: int, tokens: int) -> float:
    """``(4·N + 2·N_t)·T`` (module docstring)."""
    return float(4 * total_params + 2 * trainable_params) * tokens


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` distinct parameters (tied weights counted once)."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def peak_gpu_bytes() -> int | None:
    """Peak memory allocated by torch on the current CUDA device, ``None`` without one."""
    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


@dataclass
class TrainCost:
    """Running totals over all processes; ``flops`` follows :data:`FLOPS_FORMULA`."""

    total_params: int = 0
    trainable_params: int = 0
    optimizer_steps: int = 0
    examples: int = 0
    tokens: int = 0  # real input tokens
    padded_tokens: int = 0  # positions computed, padding included
    loss_tokens: int = 0  # tokens with a label (assistant targets)
    wall_seconds: float = 0.0  # training time, summed over resumed segments
    flops: float = 0.0
    flops_formula: str = FLOPS_FORMULA
    peak_rss_bytes: int = 0
    peak_gpu_bytes: int | None = None

    def add_step(self, *, examples: int, tokens: int, padded_tokens: int, loss_tokens: int) -> None:
        self.optimizer_steps += 1
        self.examples += examples
        self.tokens += tokens
        self.padded_tokens += padded_tokens
        self.loss_tokens += loss_tokens
        self.flops = training_flops(self.total_params, self.trainable_params, self.tokens)

    def finish(self) -> None:
        """Record peak memory (call at the end of the run)."""
        self.peak_rss_bytes = max(self.peak_rss_bytes, peak_rss_bytes())
        gpu = peak_gpu_bytes()
        if gpu is not None:
            self.peak_gpu_bytes = max(self.peak_gpu_bytes or 0, gpu)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainCost:
        return cls(**data)
