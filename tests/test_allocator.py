"""keep_freed_memory: freed large blocks stay mapped for reuse (glibc); the switch turns it off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# A 256 MB buffer, written so its pages are resident, then freed: what is still resident afterwards?
PROBE = """
import json, os, sys
import torch
from skillmerge.allocator import keep_freed_memory

def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

applied = keep_freed_memory()
again = keep_freed_memory()
before = resident_mb()
x = torch.ones(64 * 2**20)  # 256 MB
during = resident_mb()
del x
after = resident_mb()
print(json.dumps({"applied": applied, "again": again, "grew": during - before, "kept": after - before}))
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="the thresholds are glibc's (Linux with glibc only)",
)


def _probe(**env: str) -> dict[str, float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "SKILLMERGE_MALLOC"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc
def test_freed_large_buffer_stays_resident_for_reuse() -> None:
    out = _probe()
    assert out["applied"] is True and out["again"] is True
    assert out["grew"] > 200
    assert out["kept"] > 200  # still mapped: the next step's buffer of this size faults nothing in


@glibc
def test_system_switch_keeps_glibc_defaults() -> None:
    out = _probe(SKILLMERGE_MALLOC="system")
    assert out["applied"] is False
    assert out["grew"] > 200
    assert out["kept"] < 50  # above the default mmap threshold: unmapped on free


@glibc
def test_users_own_malloc_environment_wins() -> None:
    out = _probe(MALLOC_TRIM_THRESHOLD_="131072")
    assert out["applied"] is False
