"""frozen_heap: objects alive at entry skip cyclic collections inside the block, and only there."""

from __future__ import annotations

import gc

import pytest

from skillmerge.frozen_heap import frozen_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_objects_alive_at_entry_are_frozen_inside_and_collectable_after() -> None:
    gc.unfreeze()
    older = _Node()
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        assert not any(o is older for o in gc.get_objects())  # in the permanent generation
        newer = _Node()
        assert any(o is newer for o in gc.get_objects())  # what the block makes is still collected
    assert gc.get_freeze_count() == 0
    assert any(o is older for o in gc.get_objects())


def test_a_cycle_dropped_inside_the_block_is_collected_after_it() -> None:
    gc.unfreeze()
    import weakref

    node = _Node()
    alive = weakref.ref(node)
    with frozen_heap():
        del node
        gc.collect()
        assert alive() is not None  # frozen: this collection skips it
    gc.collect()
    assert alive() is None


def test_a_heap_someone_else_froze_stays_frozen() -> None:
    gc.unfreeze()
    gc.freeze()
    try:
        count = gc.get_freeze_count()
        with frozen_heap():
            pass
        assert gc.get_freeze_count() == count
    finally:
        gc.unfreeze()


def test_the_heap_is_unfrozen_when_the_block_raises() -> None:
    gc.unfreeze()
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("stop")
    assert gc.get_freeze_count() == 0
