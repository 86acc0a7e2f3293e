"""The garbage collector and a server whose heap is mostly one long-lived model.

A loaded TensorFlow model leaves ~450k Python objects that live as long as the version serves; a
full (generation 2) collection walks all of them, about 0.2 s with the GIL held, and under load
every request in flight waits for it. `settle()` collects once, then moves whatever is alive into
the permanent generation (`gc.freeze`), which later collections skip: they walk only what requests
allocated since. Objects frozen and later dropped are still freed by reference counting; only their
reference cycles wait for the next `settle()`, which the reloader runs after it retires a version.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def settle() -> float:
    """Full collection (frozen objects included), then freeze the survivors. -> seconds it took."""
    start = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    seconds = time.perf_counter() - start
    log.info("heap settled: %d objects frozen in %.0f ms", gc.get_freeze_count(), seconds * 1000)
    return seconds
