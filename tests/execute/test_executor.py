"""The local executor: concurrency, the chain DAG, failures that do not stop the others, Ctrl-C."""

from __future__ import annotations

import _thread
import json
import threading

import numpy as np

from wanbatch.av.ffmpeg import read_frames

from conftest import PROJECT, CountingPreview, blobs


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def test_a_failed_scene_keeps_the_others_and_fails_its_chain(compose_demo, run_cfg, cache_dir):
    cfg = compose_demo("stitch.enabled=false")
    preview = CountingPreview(cfg.backend, fail={"harbour_voice"})
    code, run_dir, out = run_cfg(cfg, backends={"preview": preview})
    assert code == 1
    scenes = {s["id"]: s for s in _manifest(run_dir)["scenes"]}
    assert scenes["harbour_voice"]["status"] == "failed"
    assert scenes["harbour_voice"]["error"] == "scene harbour_voice failed on purpose"
    assert scenes["harbour_after"]["status"] == "failed"
    assert "parent scene `harbour_voice` did not finish" in scenes["harbour_after"]["error"]
    for sid in ("title", "sunrise", "day_to_night"):
        assert scenes[sid]["status"] == "rendered" and (run_dir / scenes[sid]["clip"]).is_file()
    assert len(blobs(cache_dir)) == 3  # the finished ones are cached
    assert "failed: scene `harbour_voice`: scene harbour_voice failed on purpose" in out
    assert f"done: 3 rendered, 0 cached, 2 failed, 0 cancelled; run directory {run_dir}" in out
    assert "failed: scene `harbour_after`: parent scene" in out  # one prefix, not `scene x: scene x:`
    last = out.strip().splitlines()[-1]
    assert last.startswith("2 scenes failed; running the same command again renders only those")
    assert str(run_dir / "manifest.json") in last
    # the rerun renders only what failed
    preview2 = CountingPreview(cfg.backend)
    assert run_cfg(cfg, backends={"preview": preview2})[0] == 0
    assert sorted(preview2.rendered) == ["harbour_after", "harbour_voice"]


def test_chained_scene_starts_from_the_exact_last_frame_of_its_parent(compose_demo, run_cfg):
    cfg = compose_demo("stitch.enabled=false")
    preview = CountingPreview(cfg.backend)
    code, run_dir, _ = run_cfg(cfg, backends={"preview": preview})
    assert code == 0
    assert preview.rendered.index("harbour_voice") < preview.rendered.index("harbour_after")
    parent_clip = run_dir / next(s["clip"] for s in _manifest(run_dir)["scenes"] if s["id"] == "harbour_voice")
    last = read_frames(parent_clip)[-1]
    given = preview.first_images["harbour_after"]
    assert given.shape == last.shape and np.array_equal(given, last)


class Together(CountingPreview):
    """Each render waits (up to a minute) until `n` renders have been at work at once: a state, so the test
    holds however slow the machine; an executor that allows fewer at once makes it wait, then fail."""

    def __init__(self, config, n):
        super().__init__(config)
        self.n = n
        self.met = threading.Event()

    def at_work(self, job, ctx):
        with self._lock:
            if self.active >= self.n:
                self.met.set()
        self.met.wait(60)


class Blocking(CountingPreview):
    """Renders after the first `free` ones block until the run is cancelled (or a minute)."""

    def __init__(self, config, free):
        super().__init__(config)
        self.free = free
        self.started = 0
        self.blocked = threading.Event()

    def render(self, job, ctx):
        with self._lock:
            self.started += 1
            block = self.started > self.free
        if block:
            self.blocked.set()
            ctx.cancel.wait(60)
        return super().render(job, ctx)


def test_concurrency_is_bounded(compose_demo, run_cfg):
    cfg = compose_demo("stitch.enabled=false", "executor.concurrency=2", "backend.max_in_flight=8")
    preview = Together(cfg.backend, 2)
    assert run_cfg(cfg, backends={"preview": preview})[0] == 0
    assert preview.met.is_set() and preview.max_active == 2
    cfg = compose_demo(
        "stitch.enabled=false",
        "executor.concurrency=8",
        "backend.max_in_flight=1",
        "cache.dir=" + compose_demo().cache.dir + "-2",
    )
    preview = CountingPreview(cfg.backend, delay=0.2)
    assert run_cfg(cfg, backends={"preview": preview})[0] == 0
    assert preview.max_active == 1  # the backend's own limit holds even with more threads


def test_ctrl_c_stops_cleanly_and_keeps_finished_clips(compose_demo, run_cfg, cache_dir, ctrl_c):
    cfg = compose_demo("stitch.enabled=false", "executor.concurrency=1")
    preview = Blocking(cfg.backend, free=2)  # the third render waits for the Ctrl-C
    cancel = threading.Event()

    def interrupt_after_two() -> None:
        preview.blocked.wait(60)
        _thread.interrupt_main()  # what Ctrl-C does to the main thread

    threading.Thread(target=interrupt_after_two, daemon=True).start()
    code, run_dir, out = run_cfg(cfg, backends={"preview": preview}, cancel=cancel)
    assert code == 130
    assert cancel.is_set()
    statuses = {s["id"]: s["status"] for s in _manifest(run_dir)["scenes"]}
    done = [sid for sid, st in statuses.items() if st == "rendered"]
    assert set(preview.rendered) == set(done) and len(done) >= 2, (statuses, preview.rendered)
    assert all(st in ("rendered", "cancelled") for st in statuses.values())
    assert "cancelled" in statuses.values()
    assert len(blobs(cache_dir)) == len(done)  # every finished clip kept
    cancelled = sum(st == "cancelled" for st in statuses.values())
    assert f"interrupted: {len(done)} rendered, 0 cached, 0 failed, {cancelled} cancelled" in out
    # and the next run renders only the rest
    preview2 = CountingPreview(cfg.backend)
    assert run_cfg(cfg, backends={"preview": preview2})[0] == 0
    assert set(preview2.rendered) == set(statuses) - set(done)


def test_the_manifest_has_the_contract_shape(compose_demo, run_cfg):
    code, run_dir, _ = run_cfg(compose_demo("stitch.enabled=false"))
    assert code == 0
    m = _manifest(run_dir)
    assert m["film"] is None
    for s in m["scenes"]:
        for key in ("id", "status", "cache_key", "backend", "model", "seed", "clip", "request_id", "error", "seconds"):
            assert key in s
        assert s["status"] == "rendered" and s["backend"] == "preview" and s["model"] == "preview"
        assert (run_dir / s["clip"]).is_file() and not s["clip"].startswith("/")


def test_editing_a_scene_re_renders_it_and_its_chain_only(compose_demo, run_cfg):
    cfg = compose_demo("stitch.enabled=false")
    assert run_cfg(cfg)[0] == 0
    edited = compose_demo("stitch.enabled=false")
    next(s for s in edited.scenes if s["id"] == "harbour_voice")["prompt"] = "A narrator over a grey harbour."
    preview = CountingPreview(edited.backend)
    assert run_cfg(edited, backends={"preview": preview})[0] == 0
    assert sorted(preview.rendered) == ["harbour_after", "harbour_voice"]  # the parent and its chained child


def test_a_ctrl_c_inside_the_bookkeeping_of_a_finished_job_loses_nothing(compose_demo, cache_dir):
    """Ctrl-C can land anywhere in the main thread, e.g. while it records a job that just finished (here:
    in the first `on_done`). That job still ends recorded, the others cancelled or done, nothing `pending`."""
    import pytest

    from wanbatch.backends import build_backends
    from wanbatch.cache.store import Cache
    from wanbatch.config.load import backend_configs
    from wanbatch.core.plan import make_plan
    from wanbatch.core.project import load_project
    from wanbatch.execute.local import LocalExecutor

    from conftest import PROJECT

    cfg = compose_demo("stitch.enabled=false")
    project = load_project(cfg, PROJECT.parent, backend_configs(cfg))
    plan = make_plan(project, build_backends(project.backend_configs))
    recorded: dict[str, str] = {}
    calls = []

    def on_done(outcome):
        calls.append(outcome.scene)
        if len(calls) == 1:
            raise KeyboardInterrupt  # the Ctrl-C, in the middle of recording the first finished job
        recorded[outcome.scene] = outcome.status

    cache = Cache(cache_dir)
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor(cache, concurrency=1).run(plan, on_done=on_done)
    cache.close()
    assert calls[0] in recorded and recorded[calls[0]] in ("rendered", "cached")
    assert set(recorded) == {j.id for j in plan.jobs}  # every job ended somehow: none left pending
    assert set(recorded.values()) <= {"rendered", "cached", "cancelled"}


class HeldUntilIdle(CountingPreview):
    """Renders wait until the executor says it is idle (the test's `on_idle` releases them), or a minute."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.release = threading.Event()

    def at_work(self, job, ctx):
        self.release.wait(60)


def test_the_executor_calls_on_idle_once_while_jobs_are_out_and_none_lands(compose_demo, cache_dir):
    """`on_idle` (the run imports what its film and report will need) comes while the renders are out and the
    executor has nothing to do, once: not after every job, not after the last."""
    from wanbatch.cache.store import Cache
    from wanbatch.config.load import backend_configs
    from wanbatch.core.plan import make_plan
    from wanbatch.core.project import load_project
    from wanbatch.execute.local import LocalExecutor

    cfg = compose_demo()
    backend = HeldUntilIdle(cfg.backend)
    plan = make_plan(load_project(cfg, PROJECT.parent, backend_configs(cfg)), {"preview": backend})
    calls: list[int] = []

    def idle():
        calls.append(len(backend.rendered))
        backend.release.set()

    cache = Cache(cache_dir)
    try:
        outcomes = LocalExecutor(cache, concurrency=2).run(plan, on_idle=idle)
    finally:
        cache.close()
    assert calls == [0]  # once, before any render could land (they were held until then)
    assert sorted(backend.rendered) == sorted(j.id for j in plan.jobs)
    assert all(o.status == "rendered" for o in outcomes.values())
