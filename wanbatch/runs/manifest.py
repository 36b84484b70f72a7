"""`manifest.json` in the run directory: the contract others build on (DESIGN.md), written atomically
after every finished job, so even a killed run leaves an accurate record of what it finished.

Its shape is typed here: `Manifest` for the file, `SceneRecord` for each of its scenes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Literal, TypedDict

from wanbatch.core.job import Job
from wanbatch.core.outcome import Outcome, Status
from wanbatch.core.plan import Plan, keep_take
from wanbatch.secrets import redact

#: A scene's status in the manifest: how its job ended, or `pending` while it has not (or never did).
SceneStatus = Status | Literal["pending"]


class TransitionRecord(TypedDict):
    type: str
    duration: float


class SceneRecord(TypedDict):
    """One scene of the manifest, in plan order (its picked take); also what the run records of each job."""

    id: str
    status: SceneStatus
    cache_key: str
    backend: str
    model: str
    seed: int
    seed_was_random: bool
    clip: str | None  # relative to the run directory
    request_id: str | None  # the provider's id of a remote render
    error: str | None
    seconds: float  # wall time spent on this scene in this run
    estimated_cost: float | None  # USD this run was estimated to spend on it (0 when cached); None = unknown
    prompt: str | None
    title: str | None
    duration: float  # seconds of video
    chain_from: str | None
    transition: TransitionRecord
    params: dict[str, Any]
    info: dict[str, Any]


class KeepTake(TypedDict):
    """The Hydra overrides that make a take permanent (added to the command line that made the run)."""

    pick: str  # keep every take, film this one: `scenes.1.pick=2`
    seed: str  # keep only this take (its cache entry): `scenes.1.seed=8 scenes.1.takes=1`


class TakeRecord(TypedDict):
    """One take of a scene with several."""

    take: int  # 1-based
    seed: int
    cache_key: str
    status: SceneStatus
    clip: str | None
    seconds: float
    estimated_cost: float | None
    request_id: str | None
    error: str | None
    info: dict[str, Any]
    picked: bool  # the take in the film
    keep: KeepTake


class SceneRow(SceneRecord, total=False):
    """A scene's row: its picked take's record and, for a scene with several takes, which one is picked and
    every take beside it."""

    take: int
    takes: list[TakeRecord]


# What a take's entry holds of its job's record (the rest is the scene's own)
TAKE_FIELDS = ("seed", "cache_key", "status", "clip", "seconds", "estimated_cost", "request_id", "error", "info")


class RunNotes(TypedDict, total=False):
    """What the run adds once its jobs are over."""

    stitch: dict[str, Any]  # how the film was made ({} if it was not)
    cache_dir: str
    repaired: list[str]  # cache keys whose corrupt entries were dropped
    executor: dict[str, Any]  # the executor's summary (ray: start-up, what each actor did)
    environment: dict[str, Any]  # what made the clips (runs/environment.py)
    cost: dict[str, Any]  # the run's estimate: total, per backend, what was unknown, the budget (runs/estimate.py)


class _Manifest(TypedDict):
    project: str
    scenes: list[SceneRow]
    film: str | None  # relative to the run directory
    counts: dict[SceneStatus, int]
    started: float
    finished: float


class Manifest(_Manifest, RunNotes, total=False):
    """The whole file. Beside the run's notes, the outputs name the timeline export and the report (or
    why either failed)."""

    timeline: str
    timeline_error: str
    report: str
    report_error: str


def scene_record(
    plan: Plan, job_id: str, outcome: Outcome | None, clip_rel: str | None, estimated_cost: float | None = None
) -> SceneRecord:
    """The record of one job: a scene's row in the manifest, or one of its takes."""
    job = plan.job(job_id)
    return {
        "id": job.scene.id,
        "status": outcome.status if outcome else "pending",
        "cache_key": job.key,
        "backend": job.backend,
        "model": (outcome.model if outcome and outcome.model else job.model),
        "seed": job.scene.seed,
        "seed_was_random": job.seed_was_random,
        "clip": clip_rel,
        "request_id": outcome.request_id if outcome else None,
        "error": outcome.error if outcome else None,
        "seconds": outcome.seconds if outcome else 0.0,
        "estimated_cost": estimated_cost,
        "prompt": job.scene.prompt,
        "title": job.scene.title,
        "duration": round(job.seconds, 3),
        "chain_from": job.scene.chain_from,
        "transition": {"type": job.scene.transition.type, "duration": job.scene.transition.duration},
        "params": job.params,
        "info": outcome.info if outcome else {},
    }


def scene_row(plan: Plan, picked: Job, records: dict[str, SceneRecord]) -> SceneRow:
    """A scene's row: the record of its picked take and, where it has several, `take` (which one is picked)
    and `takes`: each take's seed, cache key, status and clip, whether it is picked, and the overrides that
    keep it (`keep`)."""
    row = records[picked.id]
    if picked.takes == 1:
        return row  # type: ignore[return-value]  # a SceneRow without its optional keys
    takes: list[TakeRecord] = []
    for job in plan.takes_of(picked.scene.id):
        rec = records[job.id]
        keep = keep_take(job.scene, job.take, job.scene.seed)
        takes.append(
            {
                "take": job.take,
                "seed": rec["seed"],
                "cache_key": rec["cache_key"],
                "status": rec["status"],
                "clip": rec["clip"],
                "seconds": rec["seconds"],
                "estimated_cost": rec["estimated_cost"],
                "request_id": rec["request_id"],
                "error": rec["error"],
                "info": rec["info"],
                "picked": job.picked,
                "keep": {"pick": keep["pick"], "seed": keep["seed"]},
            }
        )
    out: SceneRow = {**row}  # type: ignore[typeddict-item]
    out["take"] = picked.take
    out["takes"] = takes
    return out


def build(
    plan: Plan,
    outcomes: dict[str, Outcome],
    clips: dict[str, str],
    *,
    started: float,
    film: str | None = None,
    extra: RunNotes | None = None,
    records: dict[str, SceneRecord] | None = None,
    estimates: dict[str, float | None] | None = None,
) -> Manifest:
    """The manifest: a row per scene (its picked take), every take beside it where it has several. `records`
    may hold job records built earlier (each is built once per outcome, not once per write: a run of thousands
    of jobs would otherwise spend quadratic time here). `counts` counts jobs: every take is a render."""
    records = dict(records or {})
    estimates = estimates or {}
    for j in plan.jobs:
        if j.id not in records:
            records[j.id] = scene_record(plan, j.id, outcomes.get(j.id), clips.get(j.id), estimates.get(j.id))
    scenes = [scene_row(plan, j, records) for j in plan.film_jobs]
    counts: dict[SceneStatus, int] = {}
    for j in plan.jobs:
        status = records[j.id]["status"]
        counts[status] = counts.get(status, 0) + 1
    manifest: Manifest = {
        "project": plan.project.name,
        "scenes": scenes,
        "film": film,
        "counts": counts,
        "started": started,
        "finished": time.time(),
    }
    manifest.update(extra or {})
    return manifest


def write(run_dir: Path, manifest: Manifest, *, compact: bool = False) -> Path:
    """manifest.json, replaced atomically. `compact`: on one line, for the rewrites while a run goes (json's C
    encoder, about 4x faster than indenting, which only its pure-Python encoder does); a run's last write is
    indented, for reading."""
    path = run_dir / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    text = json.dumps(manifest, default=str) if compact else json.dumps(manifest, indent=2, default=str)
    tmp.write_text(redact(text))
    os.replace(tmp, path)
    return path
