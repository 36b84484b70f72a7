"""The frozen heap of a run: out of the cyclic collector's walks while the run lasts, thawed when it ends, and
given back on demand (`release`) even where it is garbage in a cycle."""

from __future__ import annotations

import gc
import weakref

from wanbatch.core.heap import frozen_heap, release


class Pipeline:
    """Something big held in a reference cycle, as a module is by its offload hooks."""

    def __init__(self) -> None:
        self.hook = lambda: self


def test_a_frozen_cycle_dropped_during_the_run_is_freed_by_release_not_by_a_collection():
    pipe = Pipeline()
    alive = weakref.ref(pipe)
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        del pipe
        gc.collect()
        assert alive() is not None  # frozen: a collection does not see it
        release()
        assert alive() is None
        assert gc.get_freeze_count() > 0  # and the run's heap is frozen again
    assert gc.get_freeze_count() == 0


def test_the_heap_thaws_when_the_last_of_nested_runs_ends():
    with frozen_heap():
        with frozen_heap():
            pass
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_outside_a_run_release_is_a_collection_and_freezes_nothing():
    pipe = Pipeline()
    alive = weakref.ref(pipe)
    del pipe
    release()
    assert alive() is None and gc.get_freeze_count() == 0
