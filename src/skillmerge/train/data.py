"""Training data: chat files or a mixture → tokenized examples → micro-batches grouped into optimizer steps.

Batching is a pure function of ``(seed, step)``, so the data position of a run is just its optimizer step
and every process computes the whole schedule locally, without communication.

- **Steps are random.** Each epoch the examples are shuffled with ``(seed, epoch)`` and cut into effective
  batches of ``E = P·A·batch_size`` examples (``P`` processes, ``A`` accumulation steps); a trailing
  remainder of fewer than ``E`` examples is not trained on in that epoch. Every optimizer step therefore
  sees the same kind of random mix as plain random batching.
- **Micro-batches are length buckets within the step.** The step's examples are sorted by length and dealt
  round-robin to the processes (balanced work); each process cuts its sorted share into contiguous
  micro-batches that minimise the work

      Σ_groups (n_g · L_g + c)    subject to  n_g · L_g ≤ max_tokens

  (``n_g`` examples padded to the group's longest ``L_g``; ``c`` = ``overhead_tokens``, the fixed cost of one
  more forward/backward in token-equivalents; ``max_tokens`` defaults to ``batch_size × max_len``, the
  memory of a full-length batch). An exact dynamic program over the sorted lengths, O(n²) per step.

- **Or padding-free** (``padding_free``): each process cuts its sorted share into contiguous micro-batches
  of at most ``max_tokens`` real tokens and lays each micro-batch's examples end to end in rows of
  ``max(ROW_TOKENS, longest)`` tokens (best-fit decreasing, :func:`~skillmerge.data.packing.pack_examples`)
  with a block-diagonal causal mask and positions restarting per example: the same examples and targets,
  no padding, usually one forward/backward per step. Short chat examples on CPU train ~20% faster so
  (docs/packing.md); the attention of a row costs ``row_length²`` instead of ``Σ length²``, which
  ``ROW_TOKENS`` bounds.

Since the loss is normalised by the target tokens of the whole step (:mod:`skillmerge.train.sft`), how a
step is cut into micro-batches does not change the gradient, only the speed: 1 process × A=2 and
2 processes × A=1 train on the same examples per step with the same gradients (up to float order).
With ``packing``, the units are packed rows instead of examples.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from skillmerge.data.mixture import load_mixture_yaml
from skillmerge.data.packing import (
    PackedRow,
    bucket_batches,
    collate_packed,
    collate_padded,
    pack_examples,
)
from skillmerge.data.records import ChatRecord
from skillmerge.data.sources import load_records
from skillmerge.data.sources.hub import HUB_PREFIX
from skillmerge.data.splits import train_val_split
from skillmerge.data.templates import check_tokenizer
from skillmerge.data.tokenize import IGNORE_INDEX, TokenizedExample, TokenizeStats, tokenize_records
from skillmerge.errors import UsageError
from skillmerge.train.config import DataConfig

# Longest padding-free row (tokens) unless one example is longer: bounds the row's row_length² attention.
ROW_TOKENS = 1024


@dataclass
class TrainData:
    """Tokenized training and validation examples, their counts, and the local files they came from."""

    train: list[TokenizedExample]
    validation: list[TokenizedExample]
    stats: TokenizeStats
    val_stats: TokenizeStats | None
    input_files: list[Path] = field(default_factory=list)


def _read(spec: str, skip_bad: bool) -> list[ChatRecord]:
    records = load_records(spec, skip_bad=skip_bad)
    if not records:
        raise UsageError(f"{spec}: no records (empty dataset)")
    return records


def load_chat_records(config: DataConfig) -> tuple[list[ChatRecord], list[ChatRecord], list[Path]]:
    """``(train, validation, local input files)`` from ``files``, ``mixture`` and ``validation``."""
    if not config.files and config.mixture is None:
        raise UsageError("data: no training data (give --data FILE or data.mixture)")
    inputs: list[Path] = []
    records: list[ChatRecord] = []
    for spec in config.files:
        if spec.endswith((".yaml", ".yml")):  # --data also accepts a mixture file
            records += _mixture(spec, inputs)
            continue
        records += _read(spec, config.skip_bad)
        inputs += _local(spec)
    if config.mixture is not None:
        records += _mixture(config.mixture, inputs)
    validation: list[ChatRecord] = []
    for spec in config.validation:
        validation += _read(spec, config.skip_bad)
        inputs += _local(spec)
    if config.val_fraction is not None:
        if validation:
            raise UsageError("data: give validation files or val_fraction, not both")
        records, validation = train_val_split(records, val_fraction=config.val_fraction, seed=0)
    return records, validation, inputs


def _mixture(path: str, inputs: list[Path]) -> list[ChatRecord]:
    spec = load_mixture_yaml(path)
    inputs.append(Path(path))
    for source in spec.sources:
        inputs += _local(spec.resolve(source))
    records = spec.build()
    if not records:
        raise UsageError(f"{path}: mixture holds no records (empty dataset)")
    return records


def _local(spec: str) -> list[Path]:
    if spec.startswith(HUB_PREFIX):
        return []
    path = Path(spec)
    return sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]


def tokenize_for_training(
    records: Sequence[ChatRecord],
    tokenizer: PreTrainedTokenizerBase,
    config: DataConfig,
    what: str = "training data",
) -> tuple[list[TokenizedExample], TokenizeStats]:
    """Tokenize with assistant-only labels; refuse when nothing is left after the length limit."""
    examples, stats = tokenize_records(records, tokenizer, config.template, config.max_len)
    if not examples:
        raise UsageError(
            f"{what}: no example left: all {len(records)} records dropped because no assistant token fits "
            f"within max_len {config.max_len} (raise --max-len)"
        )
    return examples, stats


def prepare_data(config: DataConfig, tokenizer: PreTrainedTokenizerBase) -> TrainData:
    """Read, check the template against the tokenizer, tokenize train and validation records."""
    check_tokenizer(config.template, tokenizer)
    records, val_records, inputs = load_chat_records(config)
    train, stats = tokenize_for_training(records, tokenizer, config)
    validation: list[TokenizedExample] = []
    val_stats = None
    if val_records:
        validation, val_stats = tokenize_for_training(val_records, tokenizer, config, "validation data")
    return TrainData(train, validation, stats, val_stats, inputs)


def shifted_loss_tokens(labels: Sequence[int]) -> int:
    """Targets the causal loss scores: ``labels[1:] != -100`` (the first label has nothing to predict it)."""
    return sum(1 for label in labels[1:] if label != IGNORE_INDEX)


class BatchSchedule:
    """Which examples each optimizer step trains on, their micro-batches and tensors (module docstring)."""

    def __init__(
        self,
        examples: Sequence[TokenizedExample],
        *,
        batch_size: int,
        examples_per_step: int,
        packing: bool,
        max_len: int,
        seed: int,
        pad_id: int,
        max_tokens: int | None = None,
        overhead_tokens: int = 32,
        padding_free: bool = False,
    ) -> None:
        if packing and padding_free:
            raise UsageError("packing and padding_free are two layouts: choose one")
        self.examples_per_step = examples_per_step
        self.packing = packing
        self.padding_free = padding_free
        self.seed = seed
        self.pad_id = pad_id
        self.max_tokens = max_tokens or batch_size * max_len
        self.overhead_tokens = overhead_tokens
        self._splits: dict[tuple[int, int, int], list[list[int]]] = {}
        self.units: Sequence[TokenizedExample | PackedRow] = (
            pack_examples(examples, max_len) if packing else list(examples)
        )
        self.lengths = [len(u) for u in self.units]
        self.unit_examples = [len(u.example_indices) if packing else 1 for u in self.units]  # type: ignore[union-attr]
        self.unit_loss_tokens = [shifted_loss_tokens(u.labels) for u in self.units]
        self.steps_per_epoch = len(self.units) // examples_per_step
        self._order: tuple[int, list[int]] | None = None

    def step_units(self, step: int) -> list[int]:
        """The units (examples or packed rows) of optimizer step ``step``, 0-based across epochs."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            order = list(range(len(self.units)))
            random.Random(self.seed * 100_003 + epoch).shuffle(order)
            self._order = (epoch, order)
        return self._order[1][k * self.examples_per_step : (k + 1) * self.examples_per_step]

    def micro_batches(self, step: int, process: int, processes: int) -> list[list[int]]:
        """Process ``process``'s micro-batches of ``step``: its sorted share, cut under ``max_tokens``."""
        key = (step, process, processes)
        if key not in self._splits:
            if len(self._splits) > 64:  # only the current step is asked for again
                self._splits.clear()
            ranked = sorted(self.step_units(step), key=lambda i: (self.lengths[i], i))
            share = ranked[process::processes]
            lengths = [self.lengths[i] for i in share]
            if self.padding_free:
                cuts = token_budget_split(lengths, self.max_tokens)
            else:
                cuts = cheapest_split(lengths, self.max_tokens, self.overhead_tokens)
            self._splits[key] = [share[a:b] for a, b in cuts]
        return self._splits[key]

    def counts(self, step: int, processes: int) -> dict[str, int]:
        """Examples, real tokens, padded tokens, loss tokens and micro-batches of a step, all processes."""
        units = self.step_units(step)
        padded = micro = 0
        for process in range(processes):
            for batch in self.micro_batches(step, process, processes):
                if self.padding_free:
                    rows = self._rows(batch)
                    padded += len(rows) * max(len(row) for row in rows)
                else:
                    padded += len(batch) * max(self.lengths[i] for i in batch)
                micro += 1
        return {
            "examples": sum(self.unit_examples[i] for i in units),
            "tokens": sum(self.lengths[i] for i in units),
            "padded_tokens": padded,
            "loss_tokens": sum(self.unit_loss_tokens[i] for i in units),
            "micro_batches": micro,
        }

    def collate(self, batch: Sequence[int]) -> dict[str, torch.Tensor | None]:
        """Tensors of one micro-batch: right-padded buckets, or packed rows with a block-diagonal mask."""
        if self.padding_free:
            return collate_packed(self._rows(batch), pad_id=self.pad_id)
        units = [self.units[i] for i in batch]
        if self.packing:
            return collate_packed(units, pad_id=self.pad_id)  # type: ignore[arg-type]
        return collate_padded(units, pad_id=self.pad_id)  # type: ignore[arg-type]

    def _rows(self, batch: Sequence[int]) -> list[PackedRow]:
        """A padding-free micro-batch's examples laid end to end in rows of ``max(ROW_TOKENS, longest)``."""
        examples = [self.units[i] for i in batch]
        longest = max(self.lengths[i] for i in batch)
        return pack_examples(examples, max(ROW_TOKENS, longest))  # type: ignore[arg-type]


def cheapest_split(lengths: Sequence[int], max_tokens: int, overhead: int) -> list[tuple[int, int]]:
    """Cut ascending ``lengths`` into ``[a, b)`` groups minimising ``Σ ((b − a)·lengths[b−1] + overhead)``.

    Each group fits ``(b − a)·lengths[b−1] ≤ max_tokens`` (a single item always forms a group).
    """
    n = len(lengths)
    best = [0.0] + [math.inf] * n  # best[j]: cheapest cost of the first j items
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[j - 1]
        for i in range(j - 1, -1, -1):
            size = j - i
            if size > 1 and size * longest > max_tokens:
                break
            cost = best[i] + size * longest + overhead
            if cost < best[j]:
                best[j], start[j] = cost, i
    cuts: list[tuple[int, int]] = []
    j = n
    while j > 0:
        cuts.append((start[j], j))
        j = start[j]
    return cuts[::-1]


def token_budget_split(lengths: Sequence[int], max_tokens: int) -> list[tuple[int, int]]:
    """Cut ``lengths`` into consecutive ``[a, b)`` groups of at most ``max_tokens`` tokens in all, greedily
    (a longer single item forms its own group): the micro-batches of a padding-free step."""
    cuts: list[tuple[int, int]] = []
    start, total = 0, 0
    for j, length in enumerate(lengths):
        if j > start and total + length > max_tokens:
            cuts.append((start, j))
            start, total = j, 0
        total += length
    if lengths:
        cuts.append((start, len(lengths)))
    return cuts


def validation_batches(examples: Sequence[TokenizedExample], batch_size: int) -> list[list[int]]:
    """Length buckets of the validation set, shortest first (order does not matter for a mean)."""
    return bucket_batches(examples, batch_size=batch_size, seed=None)
