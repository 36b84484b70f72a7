"""The run folder as it fills: the manifest is rewritten as jobs land, compact and spaced so that a large one
never takes the thread that hands out jobs; the run's last write is the indented, readable one."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

from wanbatch.core.outcome import Outcome
from wanbatch.runs import manifest as manifest_module
from wanbatch.runs import outputs as outputs_module
from wanbatch.runs.outputs import MANIFEST_SHARE, RunOutputs

from conftest import PROJECT


def _plan_of(cfg: Any) -> Any:
    from wanbatch.backends import build_backends
    from wanbatch.config.load import backend_configs
    from wanbatch.core.plan import make_plan
    from wanbatch.core.project import load_project

    project = load_project(cfg, PROJECT.parent, backend_configs(cfg))
    return make_plan(project, build_backends(project.backend_configs))


def test_a_slow_manifest_is_rewritten_less_often_mid_run(compose_demo, tmp_path, monkeypatch):
    plan = _plan_of(compose_demo())
    clock = [1000.0]
    monkeypatch.setattr(outputs_module, "time", SimpleNamespace(monotonic=lambda: clock[0], time=time.time))
    writes: list[bool] = []
    real = manifest_module.write

    def slow(run_dir, data, *, compact=False):  # each rewrite takes 0.1 s (on the fake clock)
        writes.append(compact)
        clock[0] += 0.1
        return real(run_dir, data, compact=compact)

    monkeypatch.setattr(manifest_module, "write", slow)
    outputs = RunOutputs(tmp_path / "run", plan, time.time())
    jobs = plan.jobs
    for job in jobs[:-1]:  # one lands every 0.6 s: more than MANIFEST_EVERY_S (0.5 s) apart
        outputs.add(Outcome(job.id, "failed", job.key, error="boom"))
        clock[0] += 0.6
    # A write taking 0.1 s may come once every 0.1 / MANIFEST_SHARE = 2 s: at the first job only (the next
    # three land 0.7, 1.3 and 1.9 s after it), where 0.5 s spacing alone would have written all four.
    assert MANIFEST_SHARE == 0.05 and len(jobs) == 5
    assert writes == [True]
    mid = (tmp_path / "run" / "manifest.json").read_text()
    assert "\n" not in mid.strip() and len(json.loads(mid)["scenes"]) == len(plan.film_jobs)
    outputs.add(Outcome(jobs[-1].id, "failed", jobs[-1].key, error="boom"))  # the last one: always written
    assert writes == [True, True]
    manifest_module.write(tmp_path / "run", outputs.manifest())  # as the run's end does: indented
    assert (tmp_path / "run" / "manifest.json").read_text().startswith('{\n  "project"')


def test_the_films_join_takes_the_clips_tables_read_as_they_landed(compose_demo, tmp_path, monkeypatch):
    """Each clip's mp4 tables are read as it lands, so the join after the last clip reads no clip again."""
    import numpy as np

    import wanbatch.av.mp4join as mp4join
    from wanbatch.av.encode import write_clip
    from wanbatch.av.mp4 import read_movie
    from wanbatch.cache.store import Cache
    from wanbatch.config.schema import EncodeConfig

    cfg = compose_demo("scenes.1.transition=cut", "scenes.3.transition=cut")
    plan = _plan_of(cfg)
    outputs = RunOutputs(tmp_path / "run", plan, time.time(), probe=True)
    for i, job in enumerate(plan.jobs):
        frames = [np.full((48, 64, 3), 40 * i + k, np.uint8) for k in range(8)]
        clip = write_clip(frames, tmp_path / f"c{i}.mp4", fps=8, settings=EncodeConfig(preset="ultrafast"))
        outputs.add(Outcome(job.id, "rendered", job.key, clip=clip))
    assert len(outputs.tables) == len(plan.film_jobs) and all(outputs.tables.values())
    reads: list[Any] = []
    real = mp4join._read_clip
    monkeypatch.setattr(mp4join, "_read_clip", lambda path: reads.append(path) or real(path))
    _name, notes = outputs.stitch(cfg.stitch, cfg.encode, None, Cache(tmp_path / "cache"))
    assert notes["method"] == "copy" and reads == []
    movie = read_movie(tmp_path / "run" / "film.mp4")
    assert movie is not None and movie.video is not None and movie.video.frames == 8 * len(plan.film_jobs)


def test_a_film_to_be_composed_keeps_no_clip_tables(compose_demo, tmp_path):
    """A transition other than a cut makes the film a composed one: reading the clips' tables would only hold
    memory (a 10,000-scene run's worth)."""
    import numpy as np

    from wanbatch.av.encode import write_clip
    from wanbatch.config.schema import EncodeConfig

    plan = _plan_of(compose_demo())  # the demo crossfades into its second scene
    outputs = RunOutputs(tmp_path / "run", plan, time.time(), probe=True)
    for i, job in enumerate(plan.jobs):
        frames = [np.full((48, 64, 3), 40 * i, np.uint8) for _ in range(4)]
        clip = write_clip(frames, tmp_path / f"c{i}.mp4", fps=8, settings=EncodeConfig(preset="ultrafast"))
        outputs.add(Outcome(job.id, "rendered", job.key, clip=clip))
    assert len(outputs.probed) == len(plan.film_jobs) and outputs.tables == {}


def test_warm_imports_what_the_film_timeline_and_report_need(compose_demo, tmp_path, monkeypatch):
    """Called while the jobs render and the executor idles, so that the path from the last clip to the report
    spends no time importing them (OpenTimelineIO and its plugin manifest: 15-60 ms)."""
    import importlib

    from wanbatch.runs.posters import EarlyPosters

    asked: list[str] = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: asked.append(name) or real(name, *a))
    plan = _plan_of(compose_demo())
    early = EarlyPosters(tmp_path / "run", None)
    try:
        RunOutputs(tmp_path / "run", plan, time.time(), posters=early, probe=True).warm()
    finally:
        early.close()
    assert {"wanbatch.film.stitch", "wanbatch.film.timeline", "wanbatch.runs.report", "opentimelineio"} <= set(asked)
    import opentimelineio

    assert opentimelineio.plugins.manifest._MANIFEST is not None  # its plugin manifest is loaded too

    asked.clear()
    RunOutputs(tmp_path / "bare", plan, time.time()).warm()  # no film, no report: nothing to import
    assert asked == []
    RunOutputs(tmp_path / "film-only", plan, time.time(), probe=True).warm()  # no report: no timeline either
    assert asked == ["wanbatch.film.stitch"]
