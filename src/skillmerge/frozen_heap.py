"""Keep the cyclic garbage collector off the objects that already exist while a long loop runs.

``import torch`` (with transformers, pydantic, ...) leaves ~210k tracked objects. A loop that allocates
many short-lived containers (tensors, closures and lists per slice in a merge) triggers the collector's
full collections every so often, and each one walks all of them: 0.10–0.12 s on 2 cores, once per
SmolLM2 merge of 1–2 s. :func:`frozen_heap` moves the objects alive at its start into the permanent
generation (``gc.freeze``) and back when it ends (``gc.unfreeze``): within the block a collection sees only
what the block created; afterwards the collector sees everything again, so a cycle among older objects is
only collected later, never lost. Where something else froze objects already, it leaves that state alone.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Objects alive at entry skip cyclic collections until exit (see the module docstring)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
