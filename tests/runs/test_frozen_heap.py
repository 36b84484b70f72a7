"""While a run renders, joins and reports, Python's cyclic collector walks only what the run itself makes: the
objects start-up and planning left alive (modules, config, plan) are frozen, and thawed when the run ends."""

from __future__ import annotations

import gc

from conftest import CountingPreview


class FreezeWatching(CountingPreview):
    """The preview backend, noting how many objects are frozen as each clip renders."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.frozen: list[int] = []

    def render(self, job, ctx):
        self.frozen.append(gc.get_freeze_count())
        return super().render(job, ctx)


def test_the_run_renders_with_the_start_up_heap_frozen_and_thaws_it_after(compose_demo, run_cfg):
    assert gc.get_freeze_count() == 0
    cfg = compose_demo()
    backend = FreezeWatching(cfg.backend)
    code, _, _ = run_cfg(cfg, backends={"preview": backend})
    assert code == 0 and backend.rendered
    # the modules alone are tens of thousands of objects; all of them are out of the collector's way
    assert min(backend.frozen) > 10_000
    assert gc.get_freeze_count() == 0


def test_a_run_with_a_failed_scene_thaws_it_too(compose_demo, run_cfg):
    cfg = compose_demo()
    backend = FreezeWatching(cfg.backend, fail={"sunrise"})
    code, _, _ = run_cfg(cfg, backends={"preview": backend})
    assert code == 1 and backend.frozen
    assert gc.get_freeze_count() == 0
