"""`executor=ray`: the plan's jobs on Ray, for work that outgrows one GPU or one machine.

    wanbatch recipe=demo executor=ray                        a local Ray: one render actor per GPU here
    wanbatch recipe=demo executor=ray executor.address=auto  join the cluster this machine belongs to

How the jobs run:

- Jobs of "local" backends (a model on a GPU) go to render actors, one per GPU (`num_gpus=1`; one CPU
  actor where the cluster has no GPU). An actor builds each backend once and keeps it, so its pipelines
  stay warm for the run and, with `keep_actors`, for the next runs of this process (a sweep's members).
  A free actor takes a job of the model it used last, else of one it used before, else of one no other
  actor has, else any: models stay put, and no actor idles while jobs wait.
- Remote-API jobs run as Ray tasks that reserve no CPU (they wait on HTTP), pinned to this machine so they
  share the cache's request journal; cpu jobs (preview) run as Ray tasks anywhere. Each backend keeps to
  its `max_in_flight`, and at most `executor.concurrency` tasks are out at once.
- This process, the driver, alone writes the cache and the manifest. For each job it takes the key's lock
  without blocking (a key another process holds waits its turn), checks the cache again, extracts a
  chained job's first frame from its parent's clip, and ships the bytes of every local input; the worker
  sends the clip's bytes back and the driver stores them. Workers need no shared filesystem.
- An actor that dies is replaced and its job retried once on another actor, then failed; a task whose
  worker dies is retried once by Ray. Ctrl-C cancels outstanding work, keeps every clip that finished
  and re-raises KeyboardInterrupt, like `executor=local`.

If Ray is already initialised in this process (a notebook, a test, an earlier member of a sweep), it is
used as it is; otherwise `ray.init` runs with the `executor` config, and Ray stays up until the process
exits, so a sweep's members pay its start-up once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import Timeout

from wanbatch.av.encode import EncodeSettings
from wanbatch.cache.store import Cache
from wanbatch.config.checks import flag, mapping, number, text
from wanbatch.config.schema import EncodeConfig, RayExecutorConfig
from wanbatch.core.backend import BackendKind, RenderResult
from wanbatch.core.job import Job
from wanbatch.core.outcome import Outcome
from wanbatch.core.plan import Plan
from wanbatch.errors import ConfigError, Issue
from wanbatch.execute.common import cached_outcome, failed_outcome, first_line_of, store, with_chain_input
from wanbatch.execute.frontier import Frontier
from wanbatch.execute.ray.actors import RenderWorker, Shipped, WorkerResult, render_task
from wanbatch.execute.ray.resources import Reservations, fit
from wanbatch.execute.ray.watchdog import StallWatch, Waiting, report
from wanbatch.execute.reporter import Reporter, Silent

STATUS_EVERY_S = 1.0  # how often busy actors are asked for their render's status line


@dataclass
class _Worker:
    """The driver's record of one render actor slot; a dead actor is replaced in the same slot."""

    slot: int
    prefix: str  # gpu | cpu
    handle: Any = None
    generation: int = 1
    busy: str | None = None  # scene id of the job it is rendering
    last: tuple[str, str] | None = None  # (backend, model) of the last job it was given
    seen: set[tuple[str, str]] = field(default_factory=set)  # every (backend, model) it has been given
    status_ref: Any = None

    @property
    def label(self) -> str:
        return f"{self.prefix}-{self.slot}" + (f"#{self.generation}" if self.generation > 1 else "")


# Render actors kept by a finished run (`keep_actors`) for the next run of this process, e.g. the next
# member of a sweep, which then finds its pipelines loaded. Keyed by what the pool's shape depends on.
_KEPT: dict[tuple[Any, ...], list[_Worker]] = {}


def release_actors() -> None:
    """End the render actors kept for a next run (and free what they hold, e.g. GPU memory)."""
    import ray

    session = _session() if ray.is_initialized() else None
    while _KEPT:
        key, workers = _KEPT.popitem()
        if key[:2] != session:
            continue  # actors of a Ray session that has ended: gone with it
        for w in workers:
            if w.handle is not None:
                with contextlib.suppress(Exception):
                    ray.get(w.handle.close.remote(), timeout=30)
                with contextlib.suppress(Exception):
                    ray.kill(w.handle, no_restart=True)


def _session() -> tuple[str, str]:
    import ray

    ctx = ray.get_runtime_context()
    return ctx.get_node_id(), ctx.get_job_id()


def check_config(cfg: RayExecutorConfig) -> list[Issue]:
    """Every problem with an `executor=ray` config (nothing is started). Used by `run` before a run. The keys
    and types are the schema's (RayExecutorConfig); this checks ranges, and that the `ray` extra is there."""
    issues: list[Issue] = []
    number(
        issues,
        "executor.num_gpus",
        cfg.num_gpus,
        minimum=0,
        nullable=True,
        allowed="null (detect) or a number of GPUs >= 0",
    )
    number(
        issues,
        "executor.num_cpus",
        cfg.num_cpus,
        minimum=0,
        nullable=True,
        allowed="null (detect) or a number of CPUs >= 0",
    )
    number(
        issues,
        "executor.num_actors",
        cfg.num_actors,
        minimum=1,
        integer=True,
        nullable=True,
        allowed="null (one per GPU) or an integer >= 1",
    )
    number(
        issues,
        "executor.actor_num_cpus",
        cfg.actor_num_cpus,
        minimum=0,
        nullable=True,
        allowed="null (fitted to the cluster) or a number >= 0",
    )
    number(
        issues,
        "executor.task_num_cpus",
        cfg.task_num_cpus,
        minimum=0,
        nullable=True,
        allowed="null (fitted to the cluster) or a number >= 0",
    )
    number(
        issues,
        "executor.stall_s",
        cfg.stall_s,
        minimum=0,
        nullable=True,
        allowed="null or 0 (no stall watchdog) or a number of seconds >= 0",
    )
    number(
        issues,
        "executor.actor_threads",
        cfg.actor_threads,
        minimum=1,
        integer=True,
        nullable=True,
        allowed="null (as a process started here) or an integer >= 1",
    )
    number(issues, "executor.concurrency", cfg.concurrency, minimum=1, integer=True)
    number(issues, "executor.cancel_grace_s", cfg.cancel_grace_s, minimum=0, allowed="a number of seconds >= 0")
    flag(issues, "executor.keep_actors", cfg.keep_actors)
    if cfg.address is not None:
        text(
            issues,
            "executor.address",
            cfg.address,
            allowed="null (start a local Ray), `auto` (the cluster this machine is in) or a URL such as ray://HOST:10001",
        )
    if cfg.address:
        for key in ("num_gpus", "num_cpus"):
            if getattr(cfg, key) is not None:
                issues.append(
                    Issue(
                        None,
                        f"executor.{key}",
                        getattr(cfg, key),
                        "null when joining a cluster (`executor.address` is set): a cluster has the "
                        "resources its nodes declare",
                    )
                )
    mapping(issues, "executor.runtime_env", cfg.runtime_env)
    mapping(issues, "executor.init", cfg.init)
    if importlib.util.find_spec("ray") is None:
        issues.append(Issue(None, "executor.name", "ray", "it needs the `ray` extra: pip install 'wanbatch[ray]'"))
    return issues


class RayExecutor:
    """Runs a plan on Ray with the same contract as LocalExecutor. Example::

    executor = RayExecutor(cache, config=RayExecutorConfig(num_gpus=2), progress=Progress(mode="plain", concurrency=8))
    outcomes = executor.run(plan, on_done=print)    # {scene id: Outcome}
    executor.summary()                              # Ray start-up time, what each worker did
    """

    def __init__(
        self,
        cache: Cache,
        *,
        config: RayExecutorConfig | None = None,
        encode: EncodeSettings | None = None,
        progress: Reporter | None = None,
        cancel: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
    ):
        self.config = config or RayExecutorConfig()
        issues = check_config(self.config)
        if issues:
            raise ConfigError(issues)
        self.cache = cache
        self.encode = encode or EncodeConfig()
        self.progress: Reporter = progress or Silent()
        self.cancel = cancel or threading.Event()
        self.say = say or _to_stderr  # the stall watchdog's reports
        self.init_s: float | None = None  # seconds ray.init took here; None if Ray was already up
        self.workers: list[dict[str, Any]] = []  # what each render actor did in the last run
        self.reservations: Reservations | None = None  # fitted by `prepare`
        self.stalls: list[str] = []  # what the stall watchdog said in the last run

    def connect(self) -> None:
        """Start a local Ray (no `address`) or join a cluster, unless this process is connected already."""
        import ray

        if ray.is_initialized():
            return
        cfg = self.config
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": cfg.log_to_driver,
            "namespace": "wanbatch",
        }
        if cfg.runtime_env:
            kwargs["runtime_env"] = dict(cfg.runtime_env)
        kwargs.update(dict(cfg.init or {}))
        t0 = time.perf_counter()
        if cfg.address:
            ray.init(address=cfg.address, **kwargs)
        else:
            ray.init(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, **kwargs)
        self.init_s = round(time.perf_counter() - t0, 3)

    def prepare(self, plan: Plan) -> list[str]:
        """Connect, and fit what the run reserves to what the cluster has (see `resources.py`); raises
        ConfigError, with the numbers, when it can never run. Nothing is started. Returns notes for the user."""
        self.connect()
        import ray

        kinds = {plan.backends[j.backend].kind for j in plan.jobs}
        res, issues = fit(
            self.config,
            ray.cluster_resources(),
            local_jobs=BackendKind.LOCAL in kinds,
            cpu_jobs=any(k not in (BackendKind.LOCAL, BackendKind.REMOTE) for k in kinds),
        )
        if issues or res is None:
            raise ConfigError(issues)
        self.reservations = res
        fitted = self.config.actor_num_cpus is None or self.config.task_num_cpus is None
        if fitted and res.shared_out:
            return [f"ray: {res.describe()}; fitted so the render actors and a preview task run at once"]
        return []

    def run(
        self,
        plan: Plan,
        on_done: Callable[[Outcome], None] = lambda _o: None,
        on_idle: Callable[[], None] | None = None,
    ) -> dict[str, Outcome]:
        """Run every job; returns outcomes by scene id. On KeyboardInterrupt, cancels outstanding work,
        keeps every finished clip, then re-raises. `on_idle` is called once, the first time half a second
        passes with jobs out and none landing."""
        if self.reservations is None:
            self.prepare(plan)
        run = _Run(self, plan, on_done)
        run.on_idle = on_idle
        interrupted = clean = False
        try:
            try:
                while not run.frontier.done and not self.cancel.is_set():
                    run.step()
            except KeyboardInterrupt:
                interrupted = True
                self.cancel.set()
            if self.cancel.is_set():
                run.cancel_outstanding()
            clean = not interrupted
        finally:
            # Actors go on to the next run only from a run that ended in order (nothing left rendering).
            self.workers = run.stop_workers(keep=self.config.keep_actors and clean)
            self.stalls = run.watch.said
        if interrupted:
            raise KeyboardInterrupt
        return run.frontier.outcomes

    def summary(self) -> dict[str, Any]:
        """For the manifest: how Ray was reached and what each render actor did."""
        import ray

        resources = ray.cluster_resources() if ray.is_initialized() else {}
        return {
            "name": "ray",
            "address": self.config.address,
            "init_s": self.init_s,
            "cluster": {k: resources[k] for k in ("CPU", "GPU") if k in resources},
            "reservations": self.reservations.as_dict() if self.reservations else None,
            "stalls": self.stalls,
            "workers": self.workers,
        }


@dataclass
class _Flight:
    job: Job  # as shipped: a chained job's `image` is its parent's last frame
    stack: ExitStack  # the key's lock and the driver's workdir, released when the job lands
    workdir: Path
    t0: float
    worker: _Worker | None  # None for a task


class _Run:
    """The state of one `RayExecutor.run`: its frontier (what waits, what is out, what has ended) and what
    is Ray's own: the flights out, the render actors, the retries of jobs whose actor died."""

    def __init__(self, ex: RayExecutor, plan: Plan, on_done: Callable[[Outcome], None]):
        import ray

        self.ray: Any = ray
        self.ex, self.plan = ex, plan
        self.on_idle: Callable[[], None] | None = None  # called once, when jobs are out and none lands for a while
        assert ex.reservations is not None, "prepare() fits the reservations first"
        self.res: Reservations = ex.reservations
        self.watch = StallWatch(ex.config.stall_s, ex.say)
        self.last_seen: tuple[Any, ...] = ()
        self.cache, self.progress = ex.cache, ex.progress
        self.frontier = Frontier(plan.jobs, progress=ex.progress, on_done=on_done)
        self.flights: dict[Any, _Flight] = {}  # ObjectRef -> flight
        self.workers: list[_Worker] = []
        self.deaths: dict[str, list[str]] = {}  # scene id -> labels of the workers that died on it
        self.died_on: dict[str, set[int]] = {}  # scene id -> slots of those workers
        self.lock_waits: set[str] = set()
        self.peeked: set[str] = set()
        self.blobs: dict[str, Any] = {}  # sha256 -> ObjectRef of an input's bytes, put once per run
        self.retired: list[dict[str, Any]] = []
        self.next_status = 0.0
        self.last_status = ""  # the latest status line an actor reported (progress, for the watchdog)
        threads = ex.config.actor_threads
        self.omp_threads = str(threads) if threads else os.environ.get("OMP_NUM_THREADS")
        self.pool_key: tuple[Any, ...] = ()
        self.node_id = self.ray.get_runtime_context().get_node_id()
        self.task = self.ray.remote(render_task)
        # Renders one at a time; cancel/status/stats answer meanwhile from the "control" group.
        self.actor_class = self.ray.remote(max_concurrency=1, concurrency_groups={"control": 2})(RenderWorker)

    # -- the loop ----------------------------------------------------------------------------------
    def step(self) -> None:
        self.frontier.fail_blocked()
        self._dispatch()
        if self.flights:
            done, _ = self.ray.wait(list(self.flights), num_returns=1, timeout=0.5)
            if not done and self.on_idle is not None:
                idle, self.on_idle = self.on_idle, None
                idle()
            for ref in done:
                self._land(ref, self.flights.pop(ref))
            self._relay_status()
        else:
            time.sleep(0.2)  # every ready job waits for a key another process is rendering
        self._watch()

    def _watch(self) -> None:
        """Anything finished, started or reported progress: the run moves. Else the watchdog may speak."""
        seen = (len(self.frontier.outcomes), frozenset(f.job.id for f in self.flights.values()), self.last_status)
        if seen != self.last_seen:
            self.last_seen = seen
            self.watch.moved()
        elif self.frontier.pending:
            self.watch.check(self._what_waits)

    def _what_waits(self) -> str:
        """What the stall report says: each waiting job and what it needs, what is out, what is free."""
        now = time.perf_counter()
        waiting = []
        for job in sorted(self.frontier.pending.values(), key=lambda j: j.scene.index):
            if job.parent is not None and job.parent not in self.frontier.outcomes:
                waiting.append(Waiting(job.id, "parent", job.parent))
            elif job.id in self.lock_waits:
                waiting.append(Waiting(job.id, "key"))
            else:
                waiting.append(Waiting(job.id, self.plan.backends[job.backend].kind.value))
        out = [(f.job.id, f.worker.label if f.worker else "a task", now - f.t0) for f in self.flights.values()]
        busy = sum(1 for w in self.workers if w.busy)
        return report(waiting, out, busy, self.res, self.ray.available_resources(), self.ray.cluster_resources())

    # -- dispatch ----------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        ready = self.frontier.ready()  # a job whose actor died first, then grouped by model
        # Cached jobs finish here and now, without waiting for a free worker. A job is looked up once when
        # it becomes ready, and again while another process holds its key (it may store the clip).
        fresh = [j for j in ready if j.id not in self.peeked or j.id in self.lock_waits]
        self.peeked.update(j.id for j in fresh)
        for job in [j for j in fresh if self.cache.peek(j.key) is not None]:
            try:
                stack = self._claim(job)
            except Exception as exc:
                self.frontier.finish(_failed(job, exc, time.perf_counter()))
                continue
            if stack is not None:
                stack.close()  # the blob turned out corrupt: it is rendered when a worker is free
        ready = [j for j in ready if j.id in self.frontier.pending]
        tasks_out = sum(1 for f in self.flights.values() if f.worker is None)
        for job in ready:
            backend = self.plan.backends[job.backend]
            if backend.kind == BackendKind.LOCAL or tasks_out >= self.ex.config.concurrency:
                continue
            if sum(1 for f in self.flights.values() if f.job.backend == job.backend) >= max(1, backend.max_in_flight):
                continue
            tasks_out += self._start(job, None)
        local = [
            j
            for j in ready
            if j.id in self.frontier.pending and self.plan.backends[j.backend].kind == BackendKind.LOCAL
        ]
        if local and not self.workers:
            self._start_workers()
        for worker in self.workers:
            while local and worker.busy is None:
                chosen = self._pick(worker, local)
                if chosen is None:
                    break
                local.remove(chosen)
                self._start(chosen, worker)

    def _pick(self, worker: _Worker, jobs: list[Job]) -> Job | None:
        """The job this free actor should take, by the model it needs: the one the actor used last (surely
        still loaded), else one it used before (maybe still loaded), else one no other actor has, else any
        (a second copy of a model, so no actor idles). A job whose actor died goes to another actor."""
        others = [w for w in self.workers if w is not worker]
        best: tuple[int, int] | None = None
        choice = None
        for order, job in enumerate(jobs):
            if others and worker.slot in self.died_on.get(job.id, ()):
                continue
            key = (job.backend, job.model)
            rank = (
                0
                if key == worker.last
                else 1
                if key in worker.seen
                else 2
                if not any(key in w.seen for w in others)
                else 3
            )
            if best is None or (rank, order) < best:
                best, choice = (rank, order), job
        return choice

    def _claim(self, job: Job) -> ExitStack | None:
        """Take the key's lock and check the cache again. None: cached (finished here) or locked elsewhere."""
        stack = ExitStack()
        try:
            stack.enter_context(self.cache.lock(job.key, timeout=0))
        except Timeout:
            stack.close()
            if job.id not in self.lock_waits:
                self.lock_waits.add(job.id)
                self.progress.update(job.id, "waiting", "another process is rendering it")
            return None
        t0 = time.perf_counter()
        try:
            hit = self.cache.fetch(job.key)
        except Exception:
            stack.close()
            raise
        if hit is not None:
            stack.close()
            self.frontier.finish(cached_outcome(job, hit, time.perf_counter() - t0))
            return None
        return stack

    def _start(self, job: Job, worker: _Worker | None) -> bool:
        """Claim the job and send it to `worker` (or out as a task). True if it went out."""
        t0 = time.perf_counter()
        try:
            stack = self._claim(job)
        except Exception as exc:
            self.frontier.finish(_failed(job, exc, t0))
            return False
        if stack is None:
            return False
        try:
            workdir = stack.enter_context(self.cache.workdir(prefix="ray-"))
            shipped_job = with_chain_input(job, self.frontier.parent_clip(job), workdir)
            backend = self.plan.backends[job.backend]
            args = (type(backend), backend.config, shipped_job, self._ship(shipped_job), self.ex.encode)
            if worker is not None:
                ref = worker.handle.render.remote(*args)
                worker.busy = job.id
                worker.last = (job.backend, job.model)
                worker.seen.add(worker.last)
                where = f"on {worker.label}"
            else:
                ref = self.task.options(**self._task_options(backend.kind)).remote(
                    *args, str(self.cache.dir / "journal") if backend.kind == BackendKind.REMOTE else None
                )
                where = "ray task"
        except Exception as exc:
            stack.close()
            self.frontier.finish(_failed(job, exc, t0))
            return False
        self.frontier.start(job)
        self.lock_waits.discard(job.id)
        self.flights[ref] = _Flight(shipped_job, stack, workdir, t0, worker)
        retry = f" (retry after {', '.join(self.deaths[job.id])} died)" if job.id in self.deaths else ""
        self.progress.update(job.id, "running", where + retry)
        return True

    def _ship(self, job: Job) -> Shipped:
        """The bytes of each local input, put in Ray's object store once per distinct file."""
        shipped: dict[str, tuple[str, Any]] = {}
        for name, media in job.inputs.items():
            if media.path is None:
                continue  # a URL: the backend fetches (or forwards) it itself
            digest = media.sha256 or str(media.path)
            if digest not in self.blobs:
                self.blobs[digest] = self.ray.put(media.path.read_bytes())
            shipped[name] = (media.path.name, self.blobs[digest])
        return shipped

    def _task_options(self, kind: BackendKind) -> dict[str, Any]:
        if kind == BackendKind.REMOTE:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            return {
                "num_cpus": 0,
                "max_retries": 1,
                "retry_exceptions": False,
                "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=self.node_id, soft=False),
            }
        return {"num_cpus": self.res.task_cpus, "max_retries": 1, "retry_exceptions": False}

    # -- results -----------------------------------------------------------------------------------
    def _land(self, ref: Any, flight: _Flight) -> None:
        from ray.exceptions import RayActorError, RayError, TaskCancelledError

        job, worker = self.plan.job(flight.job.id), flight.worker
        if worker is not None:
            worker.busy = None
        try:
            res: WorkerResult = self.ray.get(ref)
        except RayActorError as exc:
            flight.stack.close()
            if worker is not None:
                self._actor_died(job, worker, exc, flight.t0)
            else:
                self.frontier.finish(_failed(job, exc, flight.t0))
            return
        except TaskCancelledError:
            flight.stack.close()
            self.frontier.finish(
                Outcome(job.id, "cancelled", job.key, model=job.model, error="cancelled", seconds=_since(flight.t0))
            )
            return
        except RayError as exc:  # the task's worker died twice, ran out of memory, ...
            flight.stack.close()
            self.frontier.finish(_failed(job, exc, flight.t0, prefix="the Ray worker failed: "))
            return
        info = {**res.info, **({"retried_after": self.deaths[job.id]} if job.id in self.deaths else {})}
        try:
            if res.status == "rendered" and res.video is not None:
                video = flight.workdir / "clip.mp4"
                video.write_bytes(res.video)
                took = time.perf_counter() - flight.t0
                result = RenderResult(video, res.model or job.model, res.request_id, info)
                hit = store(self.cache, flight.job, result, took, flight.workdir)
                outcome = Outcome(
                    job.id,
                    "rendered",
                    job.key,
                    clip=hit.path,
                    model=res.model,
                    request_id=res.request_id,
                    seconds=round(took, 3),
                    info=info,
                )
            else:
                outcome = Outcome(
                    job.id,
                    res.status,
                    job.key,
                    model=res.model or job.model,
                    request_id=res.request_id,
                    error=res.error,
                    seconds=_since(flight.t0),
                    info=info,
                )
        except Exception as exc:
            outcome = _failed(job, exc, flight.t0)
        finally:
            flight.stack.close()
        self.frontier.finish(outcome)

    def _actor_died(self, job: Job, worker: _Worker, exc: Exception, t0: float) -> None:
        """Replace the actor; retry its job once on another actor, or fail it if it has had its retry."""
        died = worker.label
        self.deaths.setdefault(job.id, []).append(died)
        self.died_on.setdefault(job.id, set()).add(worker.slot)
        self.retired.append({"worker": died, "died": True, "jobs": None, "error": first_line_of(exc)})
        if self.ex.cancel.is_set():
            worker.handle = None  # no replacement: nothing more will start
        else:
            self._replace(worker)
        if len(self.deaths[job.id]) >= 2 or self.ex.cancel.is_set():
            self.frontier.finish(
                Outcome(
                    job.id,
                    "failed",
                    job.key,
                    model=job.model,
                    seconds=_since(t0),
                    error=f"the render worker died ({', '.join(self.deaths[job.id])}; retried once): "
                    f"{first_line_of(exc)}",
                )
            )
        else:
            self.frontier.requeue(job.id, first=True)
            self.progress.update(job.id, "waiting", f"{died} died; retrying on another worker")

    def _relay_status(self) -> None:
        """Show each busy actor's latest render status (e.g. denoising step) on its scene's line."""
        now = time.monotonic()
        for w in self.workers:
            if w.status_ref is not None and self.ray.wait([w.status_ref], timeout=0)[0]:
                with contextlib.suppress(Exception):
                    scene, msg = self.ray.get(w.status_ref)
                    if scene is not None and scene == w.busy and msg:
                        self.progress.update(scene, "running", f"{w.label}: {msg}")
                        self.last_status = f"{scene}: {msg}"
                w.status_ref = None
            if w.busy is not None and w.status_ref is None and now >= self.next_status:
                w.status_ref = w.handle.status.options(concurrency_group="control").remote()
        if now >= self.next_status:
            self.next_status = now + STATUS_EVERY_S

    # -- actors ------------------------------------------------------------------------------------
    def _start_workers(self) -> None:
        """One actor per GPU in the cluster (one CPU actor if none), or those an earlier run of this
        process kept (`keep_actors`), with whatever they have loaded."""
        from ray.exceptions import GetTimeoutError, RayError

        cfg = self.ex.config
        gpus = int(self.ray.cluster_resources().get("GPU", 0))
        prefix = "gpu" if gpus else "cpu"
        count = self.res.actors or cfg.num_actors or max(1, gpus)
        self.pool_key = (*_session(), prefix, count, self.res.actor_cpus, self.omp_threads)
        kept = _KEPT.pop(self.pool_key, None)
        release_actors()  # kept for another shape of pool (or another Ray session): not ours to reuse
        self.workers = kept or [_Worker(slot, prefix) for slot in range(count)]
        for w in self.workers:
            w.busy = w.status_ref = None
            if w.handle is not None:
                try:  # a kept actor: alive, and reset for this run?
                    self.ray.get(w.handle.begin_run.options(concurrency_group="control").remote(w.label), timeout=30)
                    continue
                except (RayError, GetTimeoutError):
                    self._replace(w)
                    continue
            w.handle = self._new_actor(w)

    def _new_actor(self, w: _Worker) -> Any:
        return self.actor_class.options(
            num_gpus=1 if w.prefix == "gpu" else 0,
            num_cpus=self.res.actor_cpus,
            max_restarts=0,
            max_task_retries=0,
        ).remote(w.label, self.omp_threads)

    def _replace(self, w: _Worker) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(w.handle, no_restart=True)
        w.generation += 1
        w.busy, w.status_ref = None, None
        w.last = None
        w.seen.clear()
        w.handle = self._new_actor(w)

    def stop_workers(self, keep: bool) -> list[dict[str, Any]]:
        """Collect each actor's counters for this run; then keep the actors for the next run of this
        process, or close their backends and end them. Returns the counters."""
        from ray.exceptions import GetTimeoutError, RayError

        for flight in self.flights.values():  # only after an error: release what is still held
            flight.stack.close()
        stats: list[dict[str, Any]] = list(self.retired)
        live = [w for w in self.workers if w.handle is not None]
        refs = [w.handle.stats.options(concurrency_group="control").remote() for w in live]
        for w, ref in zip(live, refs, strict=True):
            try:
                stats.append(self.ray.get(ref, timeout=30))
                if not keep:
                    self.ray.get(w.handle.close.remote(), timeout=30)
            except (RayError, GetTimeoutError) as exc:
                stats.append({"worker": w.label, "error": first_line_of(exc)})
                keep_this = False
            else:
                keep_this = keep
            if not keep_this:
                with contextlib.suppress(Exception):
                    self.ray.kill(w.handle, no_restart=True)
                w.handle = None
        if keep and self.workers:
            _KEPT[self.pool_key] = self.workers
        self.workers = []
        self.blobs.clear()
        return stats

    # -- cancelling --------------------------------------------------------------------------------
    def cancel_outstanding(self) -> None:
        """Ctrl-C (or `cancel` set): nothing new starts, running work is asked to stop, what finishes
        within `cancel_grace_s` is kept, the rest is ended; every job not done is `cancelled`."""
        ray = self.ray
        for ref, flight in self.flights.items():
            with contextlib.suppress(Exception):
                if flight.worker is not None:  # a running actor method is only flagged by ray.cancel
                    flight.worker.handle.cancel.options(concurrency_group="control").remote()
                else:
                    ray.cancel(ref)  # KeyboardInterrupt inside the task
        deadline = time.monotonic() + float(self.ex.config.cancel_grace_s)
        while self.flights and time.monotonic() < deadline:
            left = max(0.01, deadline - time.monotonic())
            done, _ = ray.wait(list(self.flights), num_returns=1, timeout=min(0.5, left))
            for ref in done:
                self._land(ref, self.flights.pop(ref))
        for ref, flight in list(self.flights.items()):
            with contextlib.suppress(Exception):
                if flight.worker is not None:
                    ray.kill(flight.worker.handle, no_restart=True)
                    flight.worker.handle = None
                else:
                    ray.cancel(ref, force=True)
            flight.stack.close()
            job = self.plan.job(flight.job.id)
            self.frontier.finish(
                Outcome(
                    job.id,
                    "cancelled",
                    job.key,
                    model=job.model,
                    seconds=_since(flight.t0),
                    error=f"did not stop within {self.ex.config.cancel_grace_s:g} s of the interrupt",
                )
            )
        self.flights.clear()
        self.frontier.cancel_rest()


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)


def _failed(job: Job, exc: BaseException, t0: float, prefix: str = "") -> Outcome:
    return failed_outcome(job, exc, t0, prefix=prefix, first_line=True)
