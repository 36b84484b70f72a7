"""What an executor tells the user while it works: a state change per scene. The console's progress display
(`wanbatch.runs.progress.Progress`) is one implementation; tests pass their own."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def update(self, scene: str, state: str, message: str = "") -> None:
        """Scene `scene` is now in `state` (waiting, running, rendered, cached, failed, cancelled)."""


class Silent:
    """A reporter that shows nothing."""

    def update(self, scene: str, state: str, message: str = "") -> None:
        pass


__all__ = ["Reporter", "Silent"]
