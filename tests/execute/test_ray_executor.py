"""`executor=ray` on one local Ray instance with two logical GPUs (CPU only): the same clips and manifest
as `executor=local`, jobs spread over both render actors, one model load per actor, a dead actor
replaced and its job retried once, Ctrl-C, and a key another process is rendering."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from wanbatch.backends import build_backends
from wanbatch.backends.preview import PreviewBackend
from wanbatch.cache.store import Cache
from wanbatch.config.backends import DiffusersConfig, PreviewConfig
from wanbatch.config.load import RECIPES_DIR, backend_configs, load_config
from wanbatch.config.schema import RayExecutorConfig, WanbatchConfig
from wanbatch.core.backend import BackendKind, RenderContext, RenderResult
from wanbatch.core.job import Job
from wanbatch.core.plan import make_plan
from wanbatch.core.project import load_project
from wanbatch.errors import Cancelled, ConfigError
from wanbatch.execute.ray.executor import RayExecutor, check_config, release_actors
from wanbatch.runs import run as run_module
from wanbatch.runs.run import run_project

from conftest import PROJECT

ray = pytest.importorskip("ray")
DEMO = RECIPES_DIR / "demo" / "project.yaml"  # the real demo: preview scenes and tiny Wan models
pytestmark = pytest.mark.slow  # one Ray for the module, and real render actors


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One Ray for the whole module (it takes seconds to start): 4 logical CPUs, 2 logical GPUs."""
    # The test backends below live in this file, which Ray workers cannot import by name: ship them by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False, namespace="wanbatch-tests")
    yield
    release_actors()
    ray.shutdown()


@dataclass
class ActorPreviewConfig(PreviewConfig):
    """Preview's options, and: `die: {scene: n}` ends the worker process (os._exit) the first n times it is
    given that scene, counted in files under `marks`; `delay: {scene: s}` waits s seconds (or until
    cancelled) before rendering."""

    die: dict[str, int] = field(default_factory=dict)
    marks: str = ""
    delay: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, preview: PreviewConfig, **test: Any) -> ActorPreviewConfig:
        return cls(**dataclasses.asdict(preview), **test)


class ActorPreview(PreviewBackend):
    """The preview backend posing as a local GPU backend, so its jobs go to the render actors."""

    kind = BackendKind.LOCAL
    config_type = ActorPreviewConfig
    config: ActorPreviewConfig

    def render(self, job: Job, ctx: RenderContext) -> RenderResult:
        times = int(self.config.die.get(job.id, 0))
        if times:
            marks = Path(self.config.marks)
            n = len(list(marks.glob(f"{job.id}.*")))
            if n < times:
                (marks / f"{job.id}.{n}").touch()
                os._exit(1)
        delay = float(self.config.delay.get(job.id, 0))
        if delay and ctx.cancel.wait(delay):
            raise Cancelled("cancelled while waiting")
        return super().render(job, ctx)


def _manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())


def _scenes(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in _manifest(run_dir)["scenes"]}


def _digest(run_dir: Path, clip: str | None) -> str | None:
    return hashlib.sha256((run_dir / clip).read_bytes()).hexdigest() if clip else None


def _fingerprint(run_dir: Path) -> list[tuple[Any, ...]]:
    """What must not depend on the executor: per scene its status, key, seed, model and clip bytes."""
    return [
        (s["id"], s["status"], s["cache_key"], s["seed"], s["model"], _digest(run_dir, s["clip"]))
        for s in _manifest(run_dir)["scenes"]
    ]


@pytest.fixture
def executors(monkeypatch) -> list[Any]:
    """Every RayExecutor run_project makes, so a test can read what the Ray workers reported."""
    made: list[Any] = []
    real = run_module._executor

    def spy(*args: Any, **kwargs: Any) -> Any:
        executor = real(*args, **kwargs)
        if isinstance(executor, RayExecutor):
            made.append(executor)
        return executor

    monkeypatch.setattr(run_module, "_executor", spy)
    return made


@pytest.fixture(scope="module")
def local_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[Any, ...]], str | None]:
    """The demo rendered by executor=local: its fingerprint and its film's digest, the reference."""
    tmp = tmp_path_factory.mktemp("local-demo")
    cfg = load_config(DEMO, [f"cache.dir={tmp / 'cache'}", "executor.progress=none"])
    assert run_project(cfg, tmp / "run", DEMO.parent, out=io.StringIO()).exit_code == 0
    return _fingerprint(tmp / "run"), _digest(tmp / "run", "film.mp4")


@pytest.mark.parametrize("kind", ["cpu", "local"])
def test_ray_renders_the_same_clips_and_manifest_as_local(kind, local_demo, compose_demo, run_cfg, executors):
    """The demo: preview scenes (a chain, driving audio, first and last frames) and tiny Wan models.
    Preview scenes go out as Ray tasks (`cpu`) or, posing as a GPU backend, to the render actors (`local`);
    model scenes always go to the actors."""
    cfg = compose_demo("executor=ray", project=DEMO)
    backend = ActorPreview(ActorPreviewConfig.of(cfg.backend)) if kind == "local" else PreviewBackend(cfg.backend)
    code, ray_dir, out = run_cfg(cfg, root=DEMO.parent, backends={"preview": backend})
    assert code == 0, out
    assert (_fingerprint(ray_dir), _digest(ray_dir, "film.mp4")) == local_demo
    scenes = _scenes(ray_dir).values()
    on_actors = [s for s in scenes if s["backend"] != "preview" or kind == "local"]
    assert all(s["info"]["worker"].startswith("task@") for s in scenes if s not in on_actors)
    if on_actors:  # render actors, one per logical GPU, both used
        assert len({s["info"]["worker"] for s in on_actors}) == 2
        assert all(s["info"]["worker"].startswith("gpu-") for s in on_actors)
        assert sum(w["jobs"] for w in executors[0].workers) == len(on_actors)

    # the rerun is served from the cache by the driver: nothing is sent to Ray
    code, rerun_dir, _ = run_cfg(cfg, root=DEMO.parent, backends={"preview": backend})
    assert code == 0
    assert {s["status"] for s in _scenes(rerun_dir).values()} == {"cached"}
    assert executors[-1].workers == []


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "diffusers", "transformers")),
    reason="needs the `local` extra (torch, diffusers)",
)
def test_tiny_wan_models_load_once_per_actor_and_match_local(tmp_path, compose_demo, run_cfg, executors):
    """Two tiny random-weight Wan models, two scenes each (one chained). Each actor loads each model it
    renders once, counted by its pipeline pool (`warm` is false only on the render that loaded it). The
    pool may keep both models, so this holds whichever jobs an idle actor takes to stay busy."""

    def tiny_cfg(*overrides: str) -> WanbatchConfig:
        cfg = compose_demo("stitch.enabled=false", "report=false", *overrides)
        cfg.backend = DiffusersConfig(model="tiny-t2v", models_dir=str(tmp_path / "models"), warm_models=2)
        cfg.project.defaults = {}
        cfg.scenes = [
            {"id": "fox", "prompt": "a red fox in snow", "seed": 1},
            {"id": "bird", "prompt": "a blue bird", "seed": 2},
            {"id": "hills", "prompt": "hills at dawn", "seed": 3, "image": "assets/day.png", "model": "tiny-i2v"},
            {"id": "fox_after", "prompt": "the fox runs on", "seed": 4, "chain_from": "fox", "model": "tiny-i2v"},
        ]
        return cfg

    code, local_dir, _ = run_cfg(tiny_cfg(f"cache.dir={tmp_path / 'local-cache'}"))
    assert code == 0
    code, ray_dir, out = run_cfg(tiny_cfg("executor=ray"))
    assert code == 0, out
    assert _fingerprint(ray_dir) == _fingerprint(local_dir)

    scenes = _scenes(ray_dir).values()
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for s in scenes:
        by_worker.setdefault(s["info"]["worker"], []).append(s)
    assert len(by_worker) == 2  # spread over both logical GPUs
    for worker, done in by_worker.items():
        models = {s["model"] for s in done}
        loads = [s["id"] for s in done if not s["info"]["warm"]]
        assert len(loads) == len(models), f"{worker} loaded {loads} for models {models}"
    stats = {w["worker"]: w for w in executors[-1].workers}
    assert all(w["built"] == {"diffusers": 1} for w in stats.values())  # one backend, kept for the run
    # torch's thread count changes CPU pixels: actors run with this process's setting, not Ray's 1 per CPU
    assert {w["omp_threads"] for w in stats.values()} == {os.environ.get("OMP_NUM_THREADS")}

    # The next run in this process (a sweep's next member: other seeds) finds the actors and their models:
    # an actor renders a model it loaded in the run before without loading it again.
    cfg = tiny_cfg("executor=ray")
    for i, scene in enumerate(cfg.scenes):
        scene["seed"] = 100 + i
    code, again_dir, out = run_cfg(cfg)
    assert code == 0, out
    assert {w["pid"] for w in executors[-1].workers} == {w["pid"] for w in stats.values()}
    loaded_before = {(s["info"]["worker"], s["model"]) for s in scenes}
    again = [s for s in _scenes(again_dir).values() if (s["info"]["worker"], s["model"]) in loaded_before]
    assert again and all(s["status"] == "rendered" and s["info"]["warm"] for s in again)


def test_a_dead_actor_is_replaced_and_its_job_retried_once_elsewhere(tmp_path, compose_demo, run_cfg, executors):
    cfg = compose_demo("executor=ray", "stitch.enabled=false", "report=false")
    (tmp_path / "marks").mkdir()
    backend = ActorPreview(ActorPreviewConfig.of(cfg.backend, die={"sunrise": 1}, marks=str(tmp_path / "marks")))
    code, run_dir, out = run_cfg(cfg, backends={"preview": backend})
    assert code == 0, out
    scenes = _scenes(run_dir)
    assert {s["status"] for s in scenes.values()} == {"rendered"}
    died = scenes["sunrise"]["info"]["retried_after"]
    assert len(died) == 1 and died[0].startswith("gpu-")
    slot = died[0].split("#")[0]
    assert not scenes["sunrise"]["info"]["worker"].startswith(slot)  # retried on the other actor
    report = {w["worker"]: w for w in executors[0].workers}
    assert report[died[0]]["died"] is True
    generation = int(died[0].split("#")[1]) if "#" in died[0] else 1
    assert f"{slot}#{generation + 1}" in report  # the replacement, in the same slot


def test_an_actor_dying_twice_fails_only_its_job(tmp_path, compose_demo, run_cfg):
    cfg = compose_demo("executor=ray", "stitch.enabled=false", "report=false")
    (tmp_path / "marks").mkdir()
    backend = ActorPreview(ActorPreviewConfig.of(cfg.backend, die={"harbour_voice": 2}, marks=str(tmp_path / "marks")))
    code, run_dir, _ = run_cfg(cfg, backends={"preview": backend})
    assert code == 1
    scenes = _scenes(run_dir)
    assert scenes["harbour_voice"]["status"] == "failed"
    assert "render worker died" in scenes["harbour_voice"]["error"]
    assert "retried once" in scenes["harbour_voice"]["error"]
    assert scenes["harbour_after"]["status"] == "failed"  # its chain child
    assert {scenes[s]["status"] for s in ("title", "sunrise", "day_to_night")} == {"rendered"}
    assert len(list((tmp_path / "marks").iterdir())) == 2  # tried exactly twice


def test_ctrl_c_cancels_outstanding_work_and_keeps_what_finished(tmp_path, compose_demo, ctrl_c):
    cfg = compose_demo("executor=ray", "stitch.enabled=false", "report=false")
    slow = {sid: 120 for sid in ("sunrise", "day_to_night", "harbour_voice")}
    backend = ActorPreview(ActorPreviewConfig.of(cfg.backend, delay=slow))
    run_dir = tmp_path / "run"

    def interrupt_once_title_is_done() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if _scenes(run_dir)["title"]["status"] == "rendered":
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does

    threading.Thread(target=interrupt_once_title_is_done, daemon=True).start()
    t0 = time.monotonic()
    code = run_project(cfg, run_dir, PROJECT.parent, backends={"preview": backend}).exit_code
    assert code == 130
    assert time.monotonic() - t0 < 60  # the 120 s renders were cancelled, not waited for
    scenes = _scenes(run_dir)
    assert scenes["title"]["status"] == "rendered"
    assert {scenes[s]["status"] for s in ("sunrise", "day_to_night", "harbour_voice", "harbour_after")} == {"cancelled"}
    cache = Cache(cfg.cache.dir)
    try:
        assert cache.fetch(scenes["title"]["cache_key"]) is not None  # what finished is kept
        assert cache.peek(scenes["sunrise"]["cache_key"]) is None
    finally:
        cache.close()


def test_a_key_another_process_is_rendering_is_waited_for_then_served_from_the_cache(tmp_path, compose_demo, run_cfg):
    """The driver never blocks on a key's lock: it runs the other jobs, and when the other holder has
    stored the clip, takes it from the cache instead of rendering it again (what sweep members rely on)."""
    cfg = compose_demo("executor=ray", "stitch.enabled=false", "report=false")
    project = load_project(cfg, PROJECT.parent, backend_configs(cfg))
    plan = make_plan(project, build_backends(project.backend_configs))
    key = plan.job("sunrise").key
    other = Cache(cfg.cache.dir)
    held, release = threading.Event(), threading.Event()

    def other_process() -> None:
        with other.lock(key):
            held.set()
            release.wait(60)
            fake = tmp_path / "theirs.mp4"
            fake.write_bytes(b"rendered by someone else")
            other.put(key, fake, material=plan.job("sunrise").material, meta={"scene_id": "sunrise"})

    holder = threading.Thread(target=other_process)
    holder.start()
    assert held.wait(10)
    threading.Timer(8.0, release.set).start()
    try:
        code, run_dir, out = run_cfg(cfg)
    finally:
        release.set()
        holder.join()
        other.close()
    assert code == 0, out
    scenes = _scenes(run_dir)
    assert scenes["sunrise"]["status"] == "cached"
    assert (run_dir / scenes["sunrise"]["clip"]).read_bytes() == b"rendered by someone else"
    assert {s["status"] for sid, s in scenes.items() if sid != "sunrise"} == {"rendered"}


def test_ray_executor_config_is_checked_up_front(tmp_path):
    assert check_config(RayExecutorConfig(num_gpus=2)) == []
    problems = {
        i.field: str(i)
        for i in check_config(RayExecutorConfig(num_gpus=-1, num_actors=0, concurrency="8"))  # type: ignore[arg-type]
    }
    assert set(problems) == {"executor.num_gpus", "executor.num_actors", "executor.concurrency"}
    joined = {i.field: str(i) for i in check_config(RayExecutorConfig(address="auto", num_gpus=2))}
    assert "null when joining a cluster" in joined["executor.num_gpus"]
    with pytest.raises(Exception, match=r"executor\.num_cpus"):
        RayExecutor(Cache(tmp_path / "cache"), config=RayExecutorConfig(num_cpus="x"))  # type: ignore[arg-type]
    # a typo'd option is the schema's to catch, when the config is composed
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, ["executor=ray", "+executor.adress=auto"])
    [issue] = err.value.issues
    assert issue.field == "executor.adress" and issue.value == "auto"
    assert "unknown option (did you mean address?); known:" in issue.allowed and "address" in issue.allowed


def test_on_idle_is_called_once_while_a_render_is_out_and_none_lands(tmp_path, compose_demo):
    """As the local executor: the run's `on_idle` (imports for the film and report) comes while the renders are
    out and nothing lands, once."""
    cfg = compose_demo("executor=ray", "stitch.enabled=false", "report=false")
    backend = ActorPreview(ActorPreviewConfig.of(cfg.backend, delay={"title": 2.0}))  # 4 half-second waits at least
    plan = make_plan(load_project(cfg, PROJECT.parent, backend_configs(cfg)), {"preview": backend})
    calls: list[float] = []
    cache = Cache(tmp_path / "cache")
    try:
        outcomes = RayExecutor(cache, config=cfg.executor).run(plan, on_idle=lambda: calls.append(time.monotonic()))
    finally:
        cache.close()
    assert len(calls) == 1
    assert {o.status for o in outcomes.values()} == {"rendered"}
