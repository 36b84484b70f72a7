"""What runs on Ray workers for `executor=ray`: the warm render actor and the one-shot render task.

Neither touches the cache. A worker gets the job, its backend's class and config, and the bytes of
its media inputs (a chained job's `image` is the parent's last frame, extracted by the driver); it
renders into a private temp folder and returns the clip's bytes in a `WorkerResult`. The driver stores
them. So a worker needs no view of the driver's filesystem, and a cluster node no shared storage.

This module imports Ray only inside functions: the driver applies `ray.remote` to these plain
definitions, and Ray workers import them by name from the installed `wanbatch` package.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wanbatch.av.encode import EncodeSettings
from wanbatch.cache.store import Journal
from wanbatch.config.backends import BackendConfig
from wanbatch.core.backend import Backend, RenderContext
from wanbatch.core.job import Job
from wanbatch.core.names import safe_suffix
from wanbatch.core.outcome import Status
from wanbatch.errors import Cancelled, RenderError
from wanbatch.execute.common import failure_info

#: field -> (file name, bytes or a Ray ObjectRef of them): the local media inputs of one job.
Shipped = Mapping[str, tuple[str, Any]]


@dataclass
class WorkerResult:
    """What a worker sends back for one job. `video` holds the clip's bytes when status is rendered."""

    status: Status  # rendered | failed | cancelled
    worker: str
    video: bytes | None = None
    model: str | None = None
    request_id: str | None = None
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def render_shipped(
    backend: Backend,
    job: Job,
    shipped: Shipped,
    encode: EncodeSettings,
    *,
    worker: str,
    cancel: threading.Event,
    status: Callable[[str], None] = lambda _m: None,
    journal_dir: Path | None = None,
) -> WorkerResult:
    """Render one job from shipped inputs in a temp folder. Never raises: a failure is a result.

    `journal_dir` is the cache's journal where this worker shares the driver's machine (remote-API
    jobs, so a crashed run re-attaches to their requests); elsewhere a scratch journal is used."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wanbatch-ray-") as tmp:
        workdir = Path(tmp)
        journal = Journal(journal_dir or workdir / "journal")
        try:
            if cancel.is_set():
                raise Cancelled("cancelled before it started")
            job = _materialise(job, shipped, workdir / "inputs")
            ctx = RenderContext(workdir=workdir, journal=journal, encode=encode, cancel=cancel, status=status)
            result = backend.render(job, ctx)
            return WorkerResult(
                "rendered",
                worker,
                video=result.video.read_bytes(),
                model=result.model,
                request_id=result.request_id,
                info={
                    **result.info,
                    "worker": worker,
                    "host": socket.gethostname(),
                    "worker_s": round(time.perf_counter() - t0, 3),
                },
            )
        except (Cancelled, KeyboardInterrupt) as exc:  # KeyboardInterrupt: ray.cancel() of a task
            return WorkerResult("cancelled", worker, model=job.model, error=str(exc) or "cancelled")
        except Exception as exc:  # a failed scene must not take the worker down
            msg = str(exc) if isinstance(exc, RenderError) else f"{type(exc).__name__}: {exc}"
            return WorkerResult(
                "failed",
                worker,
                model=job.model,
                error=msg,
                request_id=getattr(exc, "request_id", None),
                info=failure_info(exc),
            )
        finally:
            journal.close()


def _materialise(job: Job, shipped: Shipped, folder: Path) -> Job:
    """The job with each local media input written into `folder` and pointing there (same content hash)."""
    if not shipped:
        return job
    import ray

    folder.mkdir(parents=True, exist_ok=True)
    inputs = dict(job.inputs)
    for name, (filename, data) in shipped.items():
        path = folder / f"{name}{safe_suffix(filename)}"  # one file per field; the suffix tells its type
        path.write_bytes(ray.get(data) if isinstance(data, ray.ObjectRef) else data)
        inputs[name] = dataclasses.replace(inputs[name], path=path)
    # The scene's own media fields point here too, for a backend that reads them rather than `inputs`.
    scene_media: dict[str, Any] = {n: inputs[n] for n in shipped if getattr(job.scene, n, None) is not None}
    return dataclasses.replace(job, inputs=inputs, scene=dataclasses.replace(job.scene, **scene_media))


class RenderWorker:
    """A Ray actor that owns one GPU (or, with none in the cluster, a CPU slot) for a run, or for several
    runs of one process (`executor.keep_actors`: the members of a sweep).

    It builds each backend once and keeps it (until a run brings another config for it), so a backend's
    pipeline stays loaded across the jobs the driver gives it. Renders run one at a time in the default
    concurrency group; `begin_run`, `cancel`, `status` and `stats` run in the "control" group, so they
    answer while a render is going on."""

    def __init__(self, label: str, omp_threads: str | None = None):
        # Ray sets OMP_NUM_THREADS to the actor's CPU reservation (1). Undo that before torch is imported, so
        # the actor computes like a process started from a shell (the driver's OMP_NUM_THREADS, else torch's
        # own default): the thread count changes float reductions, so a CPU render then gives the same
        # pixels as executor=local, and it uses the node's cores.
        if omp_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp_threads
        self.label = label
        self.backends: dict[str, tuple[str, Backend]] = {}  # name -> (identity of its class and config, it)
        self.built: dict[str, int] = {}
        self.jobs = 0
        self.message = ""
        self.current: str | None = None
        self._cancel = threading.Event()

    def render(
        self, backend_cls: type[Backend], config: BackendConfig, job: Job, shipped: Shipped, encode: EncodeSettings
    ) -> WorkerResult:
        config_json = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
        ident = f"{backend_cls.__module__}.{backend_cls.__qualname__}:{config_json}"
        held = self.backends.get(job.backend)
        if held is None or held[0] != ident:
            if held is not None:
                held[1].close()  # another config for this backend (a new run): its pipelines go
            self.backends[job.backend] = held = (ident, backend_cls(config))
            self.built[job.backend] = self.built.get(job.backend, 0) + 1
        backend = held[1]
        self.jobs += 1
        mismatch = _device_mismatch(backend, job)
        if mismatch:
            return WorkerResult("failed", self.label, model=job.model, error=mismatch)
        self.current, self.message = job.id, ""

        def status(msg: str) -> None:
            self.message = msg

        try:
            return render_shipped(backend, job, shipped, encode, worker=self.label, cancel=self._cancel, status=status)
        finally:
            self.current = None

    def begin_run(self, label: str) -> str:
        """A new run takes this actor over (kept from an earlier one): fresh counters, no pending cancel."""
        self.label = label
        self.built, self.jobs = {}, 0
        self._cancel.clear()
        return label

    def cancel(self) -> None:
        """Ask the running render to stop at its next safe point; later renders do not start."""
        self._cancel.set()

    def status(self) -> tuple[str | None, str]:
        return self.current, self.message

    def stats(self) -> dict[str, Any]:
        """What this worker did in this run: jobs, backends built, and each backend's own counters."""
        return {
            "worker": self.label,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
            "jobs": self.jobs,
            "built": dict(self.built),
            "backends": {name: _backend_stats(b) for name, (_, b) in self.backends.items()},
        }

    def close(self) -> None:
        for _, backend in self.backends.values():
            backend.close()
        self.backends.clear()


def _device_mismatch(backend: Backend, job: Job) -> str | None:
    """The cache key holds the device type the driver planned for (CPU and CUDA kernels give different
    pixels); a worker that would render on another must refuse rather than cache mislabelled clips."""
    planned = job.params.get("device_type")
    device_type = getattr(backend, "device_type", None)
    if planned is None or not callable(device_type) or device_type() == planned:
        return None
    return (
        f"scene `{job.id}` was planned for `{planned}` but this worker renders on `{device_type()}`: "
        "the cache key would not match the pixels. Run wanbatch (the Ray driver) on a machine of the same "
        "kind as the workers, e.g. on a GPU node of the cluster"
    )


def _backend_stats(backend: Backend) -> dict[str, Any]:
    stats = getattr(backend, "stats", None)
    if callable(stats):
        got = stats()
        return dict(got) if isinstance(got, Mapping) else {"stats": got}
    return {}


def render_task(
    backend_cls: type[Backend],
    config: BackendConfig,
    job: Job,
    shipped: Shipped,
    encode: EncodeSettings,
    journal_dir: str | None,
) -> WorkerResult:
    """A Ray task for one remote-API or cpu job: build the backend, render, close it."""
    worker = f"task@{socket.gethostname()}:{os.getpid()}"
    backend = backend_cls(config)
    try:
        return render_shipped(
            backend,
            job,
            shipped,
            encode,
            worker=worker,
            cancel=threading.Event(),
            journal_dir=Path(journal_dir) if journal_dir else None,
        )
    finally:
        backend.close()
