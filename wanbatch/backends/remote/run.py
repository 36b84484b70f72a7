"""One remote render's state: its job, its context, the counters that go to the manifest, and the one way
it waits (so that a cancel interrupts every wait: polls, retries, rate limits)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wanbatch.core.backend import RenderContext
from wanbatch.errors import Cancelled

if TYPE_CHECKING:
    from wanbatch.core.job import Job


KEPT = "its request id stays in the journal, so a rerun downloads it while its video URL lasts"


class Gone(Exception):
    """What was journalled can no longer be fetched: an expired video URL, a request the provider forgot.
    The render reports it and submits once more."""


@dataclass
class Run:
    """One render's state and counters (they go to the manifest through RenderResult.info)."""

    job: Job
    ctx: RenderContext
    reattached: bool = False
    reconciled: bool = False
    submits: int = 0
    polls: int = 0
    retries: int = 0
    notes: list[str] = field(default_factory=list)
    first_poll: dict[str, Any] = field(default_factory=dict)  # when the first poll was due, and based on what
    started: float = field(default_factory=time.monotonic)
    # where the render's time went, in seconds: `submit` (the submit call, retries included), `provider`
    # (from the provider taking the job to wanbatch seeing it final), `download` (download and check)
    timings: dict[str, float] = field(default_factory=dict)

    def wait(self, seconds: float) -> None:
        """Sleep unless cancelled; a cancel raises Cancelled at once."""
        if self.ctx.cancel.wait(max(0.0, seconds)):
            raise Cancelled(
                f"scene `{self.job.id}`: cancelled; a journalled request id is kept, so a rerun re-attaches"
            )

    def wait_paid(self, seconds: float) -> None:
        """A wait while fetching a render already paid for: only a second Ctrl-C (`abandon`) cuts it short."""
        if self.ctx.abandon.wait(max(0.0, seconds)):
            raise Cancelled(f"scene `{self.job.id}`: its download was abandoned; {KEPT}")

    def info(self, provider: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "provider": provider,
            "polls": self.polls,
            "submits": self.submits,
            "retries": self.retries,
            "reattached": self.reattached,
            "reconciled": self.reconciled,
            "seconds": round(time.monotonic() - self.started, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }
        if self.first_poll:
            out["first_poll"] = dict(self.first_poll)
        if self.notes:
            out["notes"] = list(self.notes)
        return out


__all__ = ["Gone", "Run"]
