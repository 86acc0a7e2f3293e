"""service.heap: long-lived objects frozen out of the collector's walks, cycles still freed later."""

from __future__ import annotations

import gc
import weakref

from service import heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_settle_frees_cycles_and_freezes_what_is_alive() -> None:
    alive = Node()
    garbage = Node()
    garbage_ref = weakref.ref(garbage)
    del garbage
    seconds = heap.settle()
    try:
        assert seconds >= 0 and garbage_ref() is None
        assert gc.get_freeze_count() > 0
        # A frozen cycle that becomes garbage waits for the next settle(): collect() skips it...
        alive_ref = weakref.ref(alive)
        del alive
        gc.collect()
        assert alive_ref() is not None
        heap.settle()  # ...which unfreezes first
        assert alive_ref() is None
    finally:
        gc.unfreeze()
