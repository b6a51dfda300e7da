"""Project only the target positions through the output head during training.

A causal LM computes logits for every position, but SFT scores only the assistant tokens (often a third of
the sequence or less). With a 49k vocabulary the output projection and its cross-entropy are a fifth of a
135M model's work; computing them at the target positions alone makes a training step ~20% faster on CPU
and saves the ``B × L × V`` logits buffer.

:class:`TargetHead` installs a forward pre-hook on the model's output embeddings (``lm_head``): while a
mask is set, the hook replaces the hidden states ``(B, L, H)`` by the rows ``h[:, :-1][mask]`` (``N × H``),
so ``model(...).logits`` comes back as ``N × V``, already aligned with ``labels[:, 1:][mask]``. The forward
still runs through the wrapped (DDP/FSDP) module, so gradient synchronisation is unchanged; elementwise
post-processing such as Gemma's logit soft-capping applies to the rows as it would to the full tensor.
A model whose logits do not come back as ``N × V`` (no ``get_output_embeddings``, or a head that reshapes)
is scored on full logits instead: :func:`token_loss_sum` accepts both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


class TargetHead:
    """A switchable pre-hook on ``model``'s output projection (pass the unwrapped model)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.mask: torch.Tensor | None = None
        getter = getattr(model, "get_output_embeddings", None)
        head = getter() if callable(getter) else None
        self.handle = head.register_forward_pre_hook(self._select) if head is not None else None

    def _select(self, _module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        mask = self.mask
        if mask is None or not args or not isinstance(args[0], torch.Tensor):
            return None
        hidden = args[0]
        if hidden.dim() != 3 or hidden.shape[0] != mask.shape[0] or hidden.shape[1] != mask.shape[1] + 1:
            return None  # not the full sequence (e.g. a model that slices first): leave it alone
        return (hidden[:, :-1][mask], *args[1:])

    @contextmanager
    def targets(self, labels: torch.Tensor) -> Iterator[None]:
        """Within the block the head sees only positions whose next label is a target."""
        if self.handle is None:
            yield
            return
        self.mask = labels[:, 1:] != IGNORE_INDEX
        try:
            yield
        finally:
            self.mask = None

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ cross-entropy over target tokens; position t predicts token t+1 (labels shift left by one).

    ``logits`` is either the full ``B × L × V`` tensor or the ``N × V`` target rows of :class:`TargetHead`.
    """
    shifted = labels[:, 1:]
    if logits.dim() == 2:
        targets = shifted[shifted != IGNORE_INDEX]
        if logits.shape[0] != targets.shape[0]:
            raise RuntimeError(f"head returned {logits.shape[0]} rows for {targets.shape[0]} target tokens")
        return F.cross_entropy(logits.float(), targets, reduction="sum")
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), shifted.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )
