"""What every executor shares: the outcome of a job, and the steps around a render that touch the cache."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from wanbatch.av.ffmpeg import last_frame
from wanbatch.cache.store import Cache, Hit
from wanbatch.core.backend import Backend, RenderContext, RenderResult
from wanbatch.core.job import Job
from wanbatch.core.media import inspect_local
from wanbatch.core.names import file_stem
from wanbatch.core.outcome import Outcome
from wanbatch.errors import Cancelled, RenderError


def with_chain_input(job: Job, parent_clip: Path | None, workdir: Path) -> Job:
    """A chained job gets the exact last frame of its parent's clip (decoded, lossless PNG) as `image`."""
    if job.parent is None:
        return job
    if parent_clip is None:
        raise RenderError(f"parent scene `{job.parent}` has no clip")
    # Named by the parent's sanitised id and key, never the raw id (which a project once made `../../x`).
    chain = job.material.get("media", {}).get("image", {})
    parent_key = chain.get("chain") if isinstance(chain, dict) else None
    png = last_frame(parent_clip, workdir / f"{file_stem(job.parent, parent_key)}-last.png")
    return dataclasses.replace(job, inputs={**job.inputs, "image": inspect_local("image", png)})


def store(cache: Cache, job: Job, result: RenderResult, took: float, workdir: Path) -> Hit:
    """Put a finished render into the cache, then forget its journal entry (it is paid for and kept). A video in
    the job's `workdir` (scratch, removed after the job) becomes the cache's blob itself, not a copy."""
    hit = cache.put(
        job.key,
        result.video,
        material=job.material,
        meta={
            "scene_id": job.scene.id,  # a take's misses are explained against the scene's other renders
            "backend": job.backend,
            "model": result.model,
            "seed": job.scene.seed,
            "request_id": result.request_id,
            "seconds": round(took, 3),
        },
        take=result.video.parent.resolve() == workdir.resolve(),
    )
    cache.journal.remove(job.key)
    return hit


def cached_outcome(job: Job, hit: Hit, took: float) -> Outcome:
    return Outcome(
        job.id,
        "cached",
        job.key,
        clip=hit.path,
        model=hit.entry.get("model", job.model),
        request_id=hit.entry.get("request_id"),
        seconds=round(took, 3),
        info={"rendered_in": hit.entry.get("seconds")},
    )


def render_and_store(cache: Cache, backend: Backend, job: Job, ctx_factory: Any, parent_clip: Path | None) -> Outcome:
    """The whole life of one job in this process: lock, re-check, render, store. Never raises."""
    t0 = time.perf_counter()
    ctx: RenderContext | None = None
    try:
        with cache.lock(job.key):
            hit = cache.fetch(job.key)  # another process may have rendered it while we waited
            if hit is not None:
                return cached_outcome(job, hit, time.perf_counter() - t0)
            with cache.workdir() as workdir:
                ctx = ctx_factory(workdir)
                if ctx.cancel.is_set():
                    raise Cancelled("cancelled before it started")
                job = with_chain_input(job, parent_clip, workdir)
                result = backend.render(job, ctx)
                took = time.perf_counter() - t0
                hit = store(cache, job, result, took, workdir)
        return Outcome(
            job.id,
            "rendered",
            job.key,
            clip=hit.path,
            model=result.model,
            request_id=result.request_id,
            seconds=round(took, 3),
            info=result.info,
        )
    except Exception as exc:  # a failed scene must not stop the others
        if isinstance(exc, Cancelled) or (ctx is not None and ctx.cancel.is_set()):
            # What breaks once the run is interrupted (a tool killed by the terminal's Ctrl-C) is an
            # interrupted scene, rendered again by the next run, not a failed one.
            error = str(exc) if isinstance(exc, Cancelled) else f"interrupted: {first_line_of(exc)}"
            return Outcome(
                job.id,
                "cancelled",
                job.key,
                model=job.model,
                request_id=getattr(exc, "request_id", None),
                error=error or "cancelled",
                seconds=round(time.perf_counter() - t0, 3),
            )
        return failed_outcome(job, exc, t0)


def first_line_of(exc: BaseException) -> str:
    """`Type: first line of the message`, for errors whose text runs on (a remote traceback)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def failed_outcome(job: Job, exc: BaseException, t0: float, *, prefix: str = "", first_line: bool = False) -> Outcome:
    """A failed job's outcome: a RenderError's own message (written for the user), otherwise the exception's
    type and text; `first_line` keeps only its first line (Ray's errors carry the remote traceback)."""
    if isinstance(exc, RenderError):
        msg = str(exc)
    elif first_line:
        msg = first_line_of(exc)
    else:
        msg = f"{type(exc).__name__}: {exc}"
    return Outcome(
        job.id,
        "failed",
        job.key,
        model=job.model,
        request_id=getattr(exc, "request_id", None),
        error=prefix + msg,
        seconds=round(time.perf_counter() - t0, 3),
        info=failure_info(exc),
    )


def failure_info(exc: BaseException) -> dict[str, Any]:
    """What a failure adds to the manifest beside its message: an ambiguous submit's time and payload summary."""
    details = getattr(exc, "details", None)
    return {"ambiguous_submit": dict(details)} if isinstance(details, dict) and details else {}
