"""Keep freed memory in the process for reuse: glibc's allocator tuned for training on CPU.

A training step on CPU allocates and frees the same large buffers every step: activations, every weight's
gradient, and for a tied 49k-row embedding three 113 MB buffers (the head's weight gradient, the embedding
lookup's dense gradient and their sum). glibc serves blocks above its mmap threshold (at most 32 MB, by
default adapting upwards from 128 kB) with fresh ``mmap`` pages, and returns the top of the heap to the system
once it is more than the trim threshold; either way the next step faults every page in again and the kernel
zeroes it. On SmolLM2-135M that was ~13% of a fixed-shape 8 × 37-token step (1.77 s → 1.54 s on 2 cores,
backward 1.07 → 0.85 s) and 7% of the demo's θ_G training steps (``benchmarks/train_layouts.py``,
``docs/packing.md``). Raising both thresholds to 1 GiB keeps those pages mapped: the arithmetic, and
therefore every result, is unchanged; the resident size stays at its peak instead of falling between steps.

:func:`keep_freed_memory` applies it once per process through ``mallopt`` (glibc only; a no-op elsewhere,
and when ``SKILLMERGE_MALLOC=system`` asks for the allocator's defaults). The ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` environment variables, when set, win: the user has already chosen.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30
ENV_SWITCH = "SKILLMERGE_MALLOC"

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB in this process (once); True when they are set."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get(ENV_SWITCH, "").strip().lower() == "system" or not sys.platform.startswith("linux"):
        return False
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return False
    # glibc only: musl has a mallopt that ignores these parameters, and no gnu_get_libc_version.
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))
