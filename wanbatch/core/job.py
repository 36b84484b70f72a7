"""A render job: one scene with everything its render needs, and the cache key that names its clip."""

from __future__ import annotations

from dataclasses import dataclass
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
    parent: str | None = None  # scene id whose last frame is this job's first frame
    seed_was_random: bool = False
    seconds: float = 0.0  # seconds of video this job makes
    cost: float | None = None  # estimated USD to render it (price_per_second x seconds); None = unknown
    # The user says an earlier ambiguous submit of this job was not accepted (`resubmit_ambiguous`): send it
    # again. Never part of the key.
    resubmit_ambiguous: bool = False

    @property
    def id(self) -> str:
        return self.scene.id
