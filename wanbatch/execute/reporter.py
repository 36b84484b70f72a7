"""What an executor tells the user while it works: a state change per scene. The console's progress display
(`wanbatch.runs.progress.Progress`) is one implementation; tests pass their own."""

from __future__ import annotations

from typing import Literal, Protocol

from wanbatch.core.outcome import DONE, Status

#: A scene's state on the way: waiting (not started, or put back), running, then how it ended (`Status`).
State = Literal["waiting", "running"] | Status
#: Not ended yet.
ACTIVE: tuple[State, ...] = ("waiting", "running")
#: Ended, with a clip (rendered, cached) or without (failed, cancelled).
ENDED: tuple[State, ...] = (*DONE, "failed", "cancelled")
STATES: tuple[State, ...] = (*ACTIVE, *ENDED)


class Reporter(Protocol):
    def update(self, scene: str, state: State, message: str = "") -> None:
        """Scene `scene` is now in `state` (waiting, running, rendered, cached, failed, cancelled)."""


class Silent:
    """A reporter that shows nothing."""

    def update(self, scene: str, state: State, message: str = "") -> None:
        pass


__all__ = ["ACTIVE", "ENDED", "STATES", "Reporter", "Silent", "State"]
