"""How fast this machine multiplies matrices: the yardstick printed beside every timing.

A wall time means little without the speed of the machine that measured it (a fresh cloud machine can run
its first heavy work at half the speed it reaches an hour later), so the demo and the benchmarks record
:func:`matmul_gflops` beside their seconds.
"""

from __future__ import annotations

import time
from typing import Any


def matmul_gflops(seconds: float = 2.0, size: int = 1024) -> dict[str, Any]:
    """fp32 ``size``×``size`` matmul throughput on this process's torch threads, measured for about
    ``seconds`` after one warm-up product: ``{"gflops", "threads", "size", "seconds", "torch"}``."""
    import torch

    if seconds <= 0 or size <= 0:
        raise ValueError(f"matmul_gflops: seconds and size must be positive, got {seconds} and {size}")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm-up: thread pool and caches
    count, start = 0, time.perf_counter()
    while True:
        torch.mm(a, b, out=out)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return {
        "gflops": round(2.0 * size**3 * count / elapsed / 1e9, 1),
        "threads": torch.get_num_threads(),
        "size": size,
        "seconds": round(elapsed, 2),
        "torch": torch.__version__,
    }
