"""`manifest.json` in the run directory: the contract others build on (DESIGN.md), written atomically
after every finished job, so even a killed run leaves an accurate record of what it finished."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from wanbatch.core.outcome import Outcome
from wanbatch.core.plan import Plan
from wanbatch.secrets import redact


def scene_record(plan: Plan, scene_id: str, outcome: Outcome | None, clip_rel: str | None) -> dict[str, Any]:
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
    extra: dict[str, Any] | None = None,
    records: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The manifest. `records` may hold scene records built earlier (each is built once per outcome,
    not once per write: a run of thousands of jobs would otherwise spend quadratic time here)."""
    records = records or {}
    scenes = [records.get(j.id) or scene_record(plan, j.id, outcomes.get(j.id), clips.get(j.id)) for j in plan.jobs]
    counts: dict[str, int] = {}
    for s in scenes:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
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
    tmp.write_text(redact(json.dumps(manifest, indent=2, default=str)))
    os.replace(tmp, path)
    return path
