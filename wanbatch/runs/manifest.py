"""`manifest.json` in the run directory: the contract others build on (DESIGN.md), written atomically
after every finished job, so even a killed run leaves an accurate record of what it finished."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from wanbatch.core.job import Job
from wanbatch.core.outcome import Outcome
from wanbatch.core.plan import Plan, keep_take

# What a take's entry in a scene's `takes` holds (the rest of its record is the scene's own)
TAKE_FIELDS = ("seed", "cache_key", "status", "clip", "seconds", "request_id", "error", "info")


def scene_record(plan: Plan, job_id: str, outcome: Outcome | None, clip_rel: str | None) -> dict[str, Any]:
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
        "prompt": job.scene.prompt,
        "title": job.scene.title,
        "duration": round(job.seconds, 3),
        "chain_from": job.scene.chain_from,
        "transition": {"type": job.scene.transition.type, "duration": job.scene.transition.duration},
        "params": job.params,
        "info": outcome.info if outcome else {},
    }


def scene_row(plan: Plan, picked: Job, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A scene's row: the record of its picked take and, where it has several, `take` (which one is picked)
    and `takes`: each take's seed, cache key, status and clip, whether it is picked, and the overrides that
    keep it (`keep`)."""
    row = records[picked.id]
    if picked.takes == 1:
        return row
    takes = [
        {
            "take": job.take,
            **{k: records[job.id][k] for k in TAKE_FIELDS},
            "picked": job.picked,
            "keep": keep_take(job.scene, job.take, job.scene.seed),
        }
        for job in plan.takes_of(picked.scene.id)
    ]
    return {**row, "take": picked.take, "takes": takes}


def build(
    plan: Plan,
    outcomes: dict[str, Outcome],
    clips: dict[str, str],
    *,
    started: float,
    film: str | None = None,
    extra: dict[str, Any] | None = None,
    records: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The manifest: a row per scene (its picked take), every take beside it where it has several. `records`
    may hold job records built earlier (each is built once per outcome, not once per write: a run of thousands
    of jobs would otherwise spend quadratic time here). `counts` counts jobs: every take is a render."""
    records = dict(records or {})
    for j in plan.jobs:
        if j.id not in records:
            records[j.id] = scene_record(plan, j.id, outcomes.get(j.id), clips.get(j.id))
    scenes = [scene_row(plan, j, records) for j in plan.film_jobs]
    counts: dict[str, int] = {}
    for j in plan.jobs:
        status = records[j.id]["status"]
        counts[status] = counts.get(status, 0) + 1
    return {
        "project": plan.project.name,
        "scenes": scenes,
        "film": film,
        "counts": counts,
        "started": started,
        "finished": time.time(),
        **(extra or {}),
    }


def write(run_dir: Path, manifest: dict[str, Any]) -> Path:
    path = run_dir / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(tmp, path)
    return path
