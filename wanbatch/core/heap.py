"""Keeping Python's cyclic garbage collector off what a run holds for its whole length.

Each full collection walks every object the collector tracks. What start-up and planning leave alive (the
modules, the config, the plan) lives until the run ends, yet it was walked again at every full collection:
62 ms at a time in a 100-job remote run, once just as its last clip landed and the film waited. So a run
freezes the heap (`gc.freeze`) once it is planned, and a full collection walks only what the run itself makes;
reference counting still frees whatever of the frozen heap is dropped. The run thaws the heap when it ends.

Something frozen that becomes garbage inside a reference cycle is not collected until the heap thaws: a
pipeline a backend kept warm from an earlier run, say, evicted in this one (offload hooks hold their modules in
cycles). So where memory must be given back at once, `release` collects the frozen heap too.

Example::

    with frozen_heap():   # the run
        ...
        drop(pipe)
        release()         # its memory, cycles and all, given back now

"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["frozen_heap", "release"]

_lock = threading.Lock()
_depth = 0  # runs under way in this process that froze the heap


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze what is alive now for the length of the block; thaw everything when the last such block ends."""
    global _depth
    with _lock:
        _depth += 1
        gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()


def release() -> None:
    """Collect all cyclic garbage now, what is frozen included (then freeze again inside a run): for memory that
    must be given back at once, such as a pipeline's."""
    with _lock:
        if _depth:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            return
    gc.collect()
