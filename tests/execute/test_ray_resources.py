"""Ray runs that can always go on: reservations fitted to the cluster (or exit 2 with the numbers), a stall
watchdog that says what waits on what, and the demo on this machine's real CPU count with 2 logical GPUs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from wanbatch.backends.preview import PreviewBackend
from wanbatch.config.schema import RayExecutorConfig
from wanbatch.core.backend import BackendKind, RenderContext, RenderResult
from wanbatch.core.job import Job
from wanbatch.errors import Cancelled
from wanbatch.execute.ray.resources import fit
from wanbatch.execute.ray.watchdog import StallWatch

from conftest import PROJECT, REPO

AUTO = RayExecutorConfig()  # num_actors, actor_num_cpus, task_num_cpus: null, fitted


@pytest.mark.parametrize(
    ("cpus", "gpus", "local", "cpu", "want"),
    [
        (2, 2, True, True, (2, 1.0, 2 / 3, 2 / 3)),  # the demo on this machine: 2 actors + a task fit in 2 CPUs
        (16, 2, True, True, (2, 1.0, 1.0, 1.0)),  # plenty: one CPU each
        (2, 0, True, True, (1, 0.0, 1.0, 1.0)),  # no GPU: one CPU actor
        (1, 0, True, True, (1, 0.0, 0.5, 0.5)),
        (2, 2, False, True, (0, 1.0, 0.0, 1.0)),  # previews only: no actors
        (2, 2, True, False, (2, 1.0, 1.0, 2 / 3)),  # models only: the actors take the CPUs
    ],
)
def test_reservations_are_fitted_so_actors_and_a_preview_task_run_at_once(cpus, gpus, local, cpu, want):
    res, issues = fit(AUTO, {"CPU": cpus, "GPU": gpus}, local_jobs=local, cpu_jobs=cpu)
    assert issues == [] and res is not None
    got = (res.actors, res.actor_gpus, res.actor_cpus, res.task_cpus)
    assert got == pytest.approx(want)
    assert res.actors * res.actor_cpus + (res.task_cpus if cpu else 0) <= cpus + 1e-9


def test_reservations_that_can_never_run_are_refused_with_the_numbers():
    _, issues = fit(
        RayExecutorConfig(actor_num_cpus=1, task_num_cpus=1),
        {"CPU": 2, "GPU": 2},
        local_jobs=True,
        cpu_jobs=True,
    )
    (issue,) = issues
    assert issue.field == "executor.actor_num_cpus" and issue.value == 1
    assert "2 render actor(s) x 1 CPU + 1 CPU for a preview task = 3 CPUs, and the cluster has 2" in str(issue)
    _, issues = fit(RayExecutorConfig(num_actors=3), {"CPU": 8, "GPU": 2}, local_jobs=True, cpu_jobs=False)
    assert [i.field for i in issues] == ["executor.num_actors"]
    assert "the cluster has 2: at most 2" in str(issues[0])


def test_the_stall_watchdog_says_what_waits_once_per_period():
    now = [0.0]
    said: list[str] = []
    watch = StallWatch(10, said.append, clock=lambda: now[0])
    assert watch.check(lambda: "x") is None
    now[0] = 9.0
    assert watch.check(lambda: "x") is None
    now[0] = 10.5
    assert watch.check(lambda: "b waits for a preview task") is not None
    assert said == ["stalled: no job has finished or moved for 10 s.\nb waits for a preview task"]
    now[0] = 15.0
    assert watch.check(lambda: "x") is None  # said already in this period
    now[0] = 21.0
    assert watch.check(lambda: "x") is not None
    watch.moved()
    now[0] = 30.0
    assert watch.check(lambda: "x") is None and len(said) == 2
    assert StallWatch(None, said.append).check(lambda: "x") is None  # off


def test_the_stall_report_names_each_wait_what_is_out_and_what_is_free():
    from wanbatch.execute.ray.watchdog import Waiting, report

    res, _ = fit(AUTO, {"CPU": 2, "GPU": 2}, local_jobs=True, cpu_jobs=True)
    assert res is not None
    text = report(
        [Waiting("day", "cpu"), Waiting("t2v", "local"), Waiting("after", "parent", "day"), Waiting("x", "key")],
        [("sunrise", "gpu-0", 131.0), ("i2v", "gpu-1", 12.4)],
        2,
        res,
        {"CPU": 0.0, "GPU": 0.0},
        {"CPU": 2.0, "GPU": 2.0},
    )
    assert text.splitlines() == [
        "4 job(s) wait:",
        "  day waits for a preview task (0.667 CPU)",
        "  t2v waits for a free render actor (1 GPU + 0.667 CPU each; 2 of 2 busy)",
        "  after waits for its parent scene `day`",
        "  x waits for its cache key, which another process holds (rendering it)",
        "2 out:",
        "  sunrise on gpu-0 for 131 s",
        "  i2v on gpu-1 for 12 s",
        "cluster: CPU 0 of 2 free, GPU 0 of 2 free",
        "reserved: 2 render actor(s) x (1 GPU + 0.667 CPU); 0.667 CPU per preview task; none per remote-API task "
        "(cluster: 2 CPU, 2 GPU)",
    ]


@pytest.mark.slow
def test_the_demo_on_ray_finishes_with_this_machine_s_cpus_and_two_logical_gpus(tmp_path):
    """`wanbatch recipe=demo executor=ray executor.num_gpus=2` as a user runs it: a local Ray with the CPUs
    Ray finds here (2 on CI) and 2 logical GPUs. It hung forever: both render actors took a CPU each and
    every preview task waited for one."""
    pytest.importorskip("ray")
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "wanbatch.cli",
        "recipe=demo",
        "executor=ray",
        "executor.num_gpus=2",
        "executor.stall_s=60",
        f"cache.dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
        "executor.progress=plain",
    ]
    env = {**os.environ, "RAY_ADDRESS": ""}  # a Ray of its own, never one a test or a user left running
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the demo on Ray did not finish in 15 minutes:\n{(exc.stderr or b'')[-3000:]!r}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {s["status"] for s in manifest["scenes"]} == {"rendered"} and manifest["film"] == "film.mp4"
    reserved = manifest["executor"]["reservations"]
    assert reserved["cluster_cpus"] == float(os.cpu_count() or 0) and reserved["cluster_gpus"] == 2.0
    assert reserved["actors"] * reserved["actor_cpus"] + reserved["task_cpus"] <= reserved["cluster_cpus"] + 1e-3
    assert "stalled" not in done.stderr


# -- on Ray --------------------------------------------------------------------------------------------
@pytest.fixture
def ray_like_this_machine():
    """A Ray as `executor=ray executor.num_gpus=2` starts here: 2 CPUs (CI's count), 2 logical GPUs."""
    ray = pytest.importorskip("ray")
    from wanbatch.execute.ray.executor import release_actors

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this file by name
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, namespace="wanbatch-tests")
    yield ray
    release_actors()
    ray.shutdown()


class HeldOnActors(PreviewBackend):
    """The preview backend posing as a GPU backend (its jobs go to the render actors); scenes named in
    `held` wait until the run is cancelled. A class attribute: each actor builds its own from the config."""

    kind = BackendKind.LOCAL
    held = frozenset({"title", "sunrise"})

    def render(self, job: Job, ctx: RenderContext) -> RenderResult:
        if job.id in self.held:
            ctx.cancel.wait(600)
            raise Cancelled("released by the cancel")
        return super().render(job, ctx)


@pytest.mark.slow
def test_a_stalled_ray_run_says_what_waits_on_what_and_what_is_free(tmp_path, compose_demo, ray_like_this_machine):
    from wanbatch.backends import build_backends
    from wanbatch.cache.store import Cache
    from wanbatch.config.load import backend_configs
    from wanbatch.core.plan import make_plan
    from wanbatch.core.project import load_project
    from wanbatch.execute.ray.executor import RayExecutor

    cfg = compose_demo("executor=ray", "stitch.enabled=false")
    backend = HeldOnActors(cfg.backend)  # both actors busy for good
    project = load_project(cfg, PROJECT.parent, backend_configs(cfg))
    plan = make_plan(project, build_backends(project.backend_configs, {"preview": backend}))
    said: list[str] = []
    cache = Cache(tmp_path / "cache")
    executor: Any = None

    def on_stall(text: str) -> None:  # what a user reads on the console; then they press Ctrl-C
        said.append(text)
        executor.cancel.set()

    executor = RayExecutor(cache, config=dataclasses.replace(cfg.executor, stall_s=2), say=on_stall)
    assert executor.prepare(plan) == []  # a whole CPU per actor (no preview tasks here): nothing to say
    reserved = executor.reservations
    assert reserved is not None and (reserved.actors, reserved.actor_cpus) == (2, 1.0)
    outcomes = executor.run(plan)
    cache.close()
    (text,) = said
    assert text.startswith("stalled: no job has finished or moved for ")
    assert "day_to_night waits for a free render actor (1 GPU + " in text
    assert "harbour_after waits for its parent scene `harbour_voice`" in text
    assert "title on gpu-" in text and "sunrise on gpu-" in text  # what is out, and where
    assert "cluster: CPU " in text and "GPU 0 of 2 free" in text
    assert executor.summary()["stalls"] == [text]
    assert {o.status for o in outcomes.values()} == {"cancelled"}


@pytest.mark.slow
def test_reservations_that_can_never_run_exit_2_before_anything_runs(
    tmp_path, compose_demo, run_cfg, ray_like_this_machine, capsys
):
    from wanbatch.config.load import RECIPES_DIR

    demo = RECIPES_DIR / "demo"
    cfg = compose_demo(
        "executor=ray", "executor.actor_num_cpus=1", "executor.task_num_cpus=1", project=demo / "project.yaml"
    )
    code, run_dir, _ = run_cfg(cfg, root=demo)
    assert code == 2
    err = capsys.readouterr().err
    assert "`executor.actor_num_cpus` = 1 is not allowed; 2 render actor(s) x 1 CPU + 1 CPU for a preview task" in err
    assert "= 3 CPUs, and the cluster has 2" in err
    assert not run_dir.exists() and not list((tmp_path / "cache").glob("blobs/*/*"))  # nothing ran or was kept
