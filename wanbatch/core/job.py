"""A render job: one scene with everything its render needs, and the cache key that names its clip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wanbatch.core.media import Media
from wanbatch.core.scene import Scene


@dataclass
class Job:
    scene: Scene  # with the concrete seed
    backend: str
    model: str
    params: dict[str, Any]  # canonical render parameters (no media)
    inputs: dict[str, Media]  # media inputs by field; a chained `image` is filled in at run time
    key: str
    material: dict[str, Any]  # exactly what was hashed into `key`
    parent: str | None = None  # id of the job whose last frame is this job's first frame (the parent's picked take)
    seed_was_random: bool = False
    seconds: float = 0.0  # seconds of video this job makes
    cost: float | None = None  # estimated USD to render it (price_per_second x seconds); None = unknown
    # The user says an earlier ambiguous submit of this job was not accepted (`resubmit_ambiguous`): send it
    # again. Never part of the key.
    resubmit_ambiguous: bool = False
    take: int = 1  # which take of its scene (1-based) ...
    takes: int = 1  # ... of how many
    picked: bool = True  # the take that goes into the film
    # The scene id; `scene#2` for the second take of a scene with several. Set once (executors, the manifest
    # and the plan's index read it per job, many times).
    id: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.id = take_id(self.scene.id, self.take, self.takes)


def take_id(scene_id: str, take: int, takes: int) -> str:
    return scene_id if takes == 1 else f"{scene_id}#{take}"
