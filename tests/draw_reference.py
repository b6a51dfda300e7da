"""The random draws' specification, written out independently of skillmerge.merge.methods.draws."""

from __future__ import annotations

import numpy as np
import torch


def ref_draw_words(gen: torch.Generator, n: int) -> np.ndarray:
    """A 63-bit key from the tensor's generator, then the 32-bit halves of PCG64(key)'s outputs, low half
    first: the words w_0 … w_(n−1) as uint64 values."""
    key = int(torch.randint(0, (1 << 63) - 1, (1,), generator=gen, dtype=torch.int64))
    raw = np.random.PCG64(key).random_raw((n + 1) // 2).astype(np.uint64)
    return np.stack([raw & np.uint64(0xFFFFFFFF), raw >> np.uint64(32)], axis=1).reshape(-1)[:n]
