"""How one job of a run ended: the record every executor returns and the manifest is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: rendered and cached are done (a clip exists); failed and cancelled are not.
Status = Literal["rendered", "cached", "failed", "cancelled"]
DONE: tuple[Status, ...] = ("rendered", "cached")


@dataclass
class Outcome:
    """How one job ended. `clip` is the verified blob in the cache (None unless done)."""

    scene: str
    status: Status
    key: str
    clip: Path | None = None
    model: str | None = None
    request_id: str | None = None
    error: str | None = None
    seconds: float = 0.0  # wall time spent on this job in this run
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in DONE
