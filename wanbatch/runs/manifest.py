"""`manifest.json` in the run directory: the contract others build on (DESIGN.md), written atomically
after every finished job, so even a killed run leaves an accurate record of what it finished.

Its shape is typed here: `Manifest` for the file, `SceneRecord` for each of its scenes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Literal, TypedDict

from wanbatch.core.outcome import Outcome, Status
from wanbatch.core.plan import Plan

#: A scene's status in the manifest: how its job ended, or `pending` while it has not (or never did).
SceneStatus = Status | Literal["pending"]


class TransitionRecord(TypedDict):
    type: str
    duration: float


class SceneRecord(TypedDict):
    """One scene of the manifest, in plan order."""

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


class RunNotes(TypedDict, total=False):
    """What the run adds once its jobs are over."""

    stitch: dict[str, Any]  # how the film was made ({} if it was not)
    cache_dir: str
    repaired: list[str]  # cache keys whose corrupt entries were dropped
    executor: dict[str, Any]  # the executor's summary (ray: start-up, what each actor did)
    cost: dict[str, Any]  # the run's estimate: total, per backend, what was unknown, the budget (runs/estimate.py)


class _Manifest(TypedDict):
    project: str
    scenes: list[SceneRecord]
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
    plan: Plan, scene_id: str, outcome: Outcome | None, clip_rel: str | None, estimated_cost: float | None = None
) -> SceneRecord:
    job = plan.job(scene_id)
    return {
        "id": job.id,
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
        "chain_from": job.parent,
        "transition": {"type": job.scene.transition.type, "duration": job.scene.transition.duration},
        "params": job.params,
        "info": outcome.info if outcome else {},
    }


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
    """The manifest. `records` may hold scene records built earlier (each is built once per outcome,
    not once per write: a run of thousands of jobs would otherwise spend quadratic time here)."""
    records = records or {}
    estimates = estimates or {}
    scenes = [
        records.get(j.id) or scene_record(plan, j.id, outcomes.get(j.id), clips.get(j.id), estimates.get(j.id))
        for j in plan.jobs
    ]
    counts: dict[SceneStatus, int] = {}
    for s in scenes:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
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


def write(run_dir: Path, manifest: Manifest) -> Path:
    path = run_dir / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, path)
    return path
