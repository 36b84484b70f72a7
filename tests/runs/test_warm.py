"""What a run starts before it is waited for: the backends with jobs to render are warmed before the run opens
its cache (a remote backend makes its HTTP client then), and only those: a dry run and a fully cached rerun warm
nothing, so they pay for nothing they do not use."""

from __future__ import annotations

from conftest import CountingPreview


class Warmed(CountingPreview):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.warmed = 0

    def warm(self):
        self.warmed += 1


def test_a_run_warms_the_backends_it_renders_on_and_a_rerun_or_dry_run_none(compose_demo, run_cfg):
    cfg = compose_demo()
    dry = Warmed(cfg.backend)
    assert run_cfg(compose_demo("dry_run=true"), backends={"preview": dry})[0] == 0
    assert dry.warmed == 0

    first = Warmed(cfg.backend)
    assert run_cfg(cfg, backends={"preview": first})[0] == 0
    assert first.warmed == 1 and first.rendered  # once, however many jobs

    again = Warmed(cfg.backend)
    assert run_cfg(cfg, backends={"preview": again})[0] == 0
    assert again.warmed == 0 and not again.rendered  # all cached: nothing to make ready
