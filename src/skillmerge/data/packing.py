"""Batching tokenized examples: packing into fixed-length rows, or length bucketing with right padding.

Packing concatenates several examples into one row of at most ``seq_len`` tokens and keeps them
independent, so a packed batch computes exactly what the examples would compute alone:

- ``position_ids`` restart at 0 for every example (rotary embeddings see the same positions);
- a block-diagonal causal mask ``M[q, k] = 0 if seg[q] == seg[k] and k <= q else -inf`` (additive, shape
  ``(B, 1, L, L)``), which transformers passes unchanged to ``eager`` and ``sdpa`` attention;
- the label of each example's first token is ``-100``: the model's loss shifts labels by one, so that label
  would be predicted from the previous example's last token.

Trailing padding is its own causal segment (no row is fully masked, so no NaN) with ``-100`` labels.

Bucketing sorts examples by length, cuts batches under a padded-token budget and pads each batch to its
own longest example; the usual 2D ``attention_mask`` marks padding.

Everything here is deterministic: the same inputs (and ``seed``) give the same rows and batches.
See docs/packing.md for which one is faster on CPU.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from skillmerge.data.tokenize import IGNORE_INDEX, TokenizedExample
from skillmerge.errors import UsageError


@dataclass(frozen=True, slots=True)
class PackedRow:
    """Examples laid end to end; ``segment_ids[t]`` numbers (within the row) the example of token t."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    position_ids: tuple[int, ...]
    segment_ids: tuple[int, ...]
    example_indices: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.input_ids)


def _row(examples: Sequence[TokenizedExample], indices: Sequence[int]) -> PackedRow:
    input_ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    segments: list[int] = []
    for segment, index in enumerate(indices):
        example = examples[index]
        n = len(example)
        input_ids.extend(example.input_ids)
        # Cross-example prediction guard: the first label is predicted from the previous example.
        labels.append(IGNORE_INDEX)
        labels.extend(example.labels[1:])
        positions.extend(range(n))
        segments.extend([segment] * n)
    return PackedRow(tuple(input_ids), tuple(labels), tuple(positions), tuple(segments), tuple(indices))


def pack_examples(examples: Sequence[TokenizedExample], seq_len: int) -> list[PackedRow]:
    """Pack examples into rows of at most ``seq_len`` tokens by best-fit decreasing.

    Examples are placed longest first, each into the open row with the least room that still fits it (a
    new row when none does). Best-fit decreasing needs at most 11/9 of the optimal number of rows (plus
    one) and in practice pads a few %. Ties are broken by example index, so the result is deterministic;
    within a row, examples keep their original order.
    """
    if seq_len < 1:
        raise UsageError(f"seq_len must be positive, got {seq_len}")
    for index, example in enumerate(examples):
        if len(example) > seq_len:
            raise UsageError(
                f"example {index} has {len(example)} tokens, more than the packed length {seq_len}; "
                "tokenize with max_len <= seq_len"
            )
        if len(example) == 0:
            raise UsageError(f"example {index} is empty")
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i]), i))
    rows: list[list[int]] = []
    # (room left, row number), sorted: bisect finds the tightest row that still fits.
    open_rows: list[tuple[int, int]] = []
    for index in order:
        n = len(examples[index])
        at = bisect.bisect_left(open_rows, (n, -1))
        if at == len(open_rows):
            rows.append([index])
            room, row = seq_len - n, len(rows) - 1
        else:
            room, row = open_rows.pop(at)
            rows[row].append(index)
            room -= n
        if room > 0:
            bisect.insort(open_rows, (room, row))
    return [_row(examples, sorted(indices)) for indices in rows]


def block_causal_mask(segment_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive mask ``(B, 1, L, L)``: 0 where query q may attend key k (same segment, k ≤ q), else min."""
    length = segment_ids.shape[-1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    allowed = (same & causal)[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segment_ids.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def collate_packed(
    rows: Sequence[PackedRow],
    *,
    pad_id: int,
    pad_to: int | None = None,
    mask: Literal["4d", "position_ids"] = "4d",
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor | None]:
    """Tensors for a batch of packed rows, right-padded to ``pad_to`` (default: the longest row).

    ``mask="4d"`` returns the block-diagonal additive mask in ``dtype`` (use the model's compute dtype).
    ``mask="position_ids"`` returns ``attention_mask=None``: transformers then infers the example boundaries
    from the restarting ``position_ids`` (the form flash-attention varlen kernels need). That inference
    only happens without a KV cache: call the model with ``use_cache=False`` (as training should anyway),
    or examples silently attend across boundaries. The padding tail is one more restarting segment.
    """
    length = max(len(row) for row in rows)
    if pad_to is not None:
        if pad_to < length:
            raise UsageError(f"pad_to={pad_to} is shorter than the longest packed row ({length})")
        length = pad_to
    batch = len(rows)
    input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((batch, length), dtype=torch.long)
    segment_ids = torch.zeros((batch, length), dtype=torch.long)
    for b, row in enumerate(rows):
        n = len(row)
        input_ids[b, :n] = torch.tensor(row.input_ids)
        labels[b, :n] = torch.tensor(row.labels)
        position_ids[b, :n] = torch.tensor(row.position_ids)
        segment_ids[b, :n] = torch.tensor(row.segment_ids)
        if n < length:
            position_ids[b, n:] = torch.arange(length - n)
            segment_ids[b, n:] = (row.segment_ids[-1] + 1) if n else 0
    attention_mask = block_causal_mask(segment_ids, dtype) if mask == "4d" else None
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
    }


def bucket_batches(
    lengths: Sequence[int] | Sequence[TokenizedExample],
    *,
    max_tokens: int | None = None,
    batch_size: int | None = None,
    seed: int | None = 0,
) -> list[list[int]]:
    """Group example indices into batches of similar length.

    Indices are sorted by length (ties by index) and cut into consecutive batches, each holding at most
    ``batch_size`` examples and at most ``max_tokens`` padded tokens (``len(batch) · longest``). The batch
    order is then shuffled with ``seed`` (``None`` keeps shortest-first) so training does not see a length
    curriculum. An example longer than ``max_tokens`` gets a batch of its own.
    """
    if max_tokens is None and batch_size is None:
        raise UsageError("bucket_batches needs max_tokens or batch_size")
    sizes = [x if isinstance(x, int) else len(x) for x in lengths]
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = sizes[index]  # sorted ascending: the newcomer is the longest
        too_many = batch_size is not None and len(current) + 1 > batch_size
        too_big = max_tokens is not None and (len(current) + 1) * longest > max_tokens
        if current and (too_many or too_big):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    if seed is not None:
        random.Random(seed).shuffle(batches)
    return batches


def collate_padded(
    examples: Sequence[TokenizedExample], *, pad_id: int, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor | None]:
    """Right-padded tensors for one bucket: 2D ``attention_mask`` (1 = token, 0 = padding)."""
    length = max(len(example) for example in examples)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    batch = len(examples)
    input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.long)
    position_ids = torch.arange(length).repeat(batch, 1)
    for b, example in enumerate(examples):
        n = len(example)
        input_ids[b, :n] = torch.tensor(example.input_ids)
        labels[b, :n] = torch.tensor(example.labels)
        attention_mask[b, :n] = 1
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
    }


def packed_batches(rows: Sequence[PackedRow], batch_size: int, *, seed: int | None = 0) -> list[list[int]]:
    """Row indices in batches of ``batch_size`` (the last may be smaller), shuffled with ``seed``."""
    order = list(range(len(rows)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
