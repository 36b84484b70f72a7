"""The stall watchdog of a Ray run: when no job has finished or moved for `stall_s` seconds while jobs wait,
say what waits, on which resources, what is out, and what the cluster has free. Said again every `stall_s`
while the stall lasts, so a run that cannot go on is never silent (a run that hangs with "pending" and no
word is the worst kind). Example::

    watch = StallWatch(120, say=print)
    ...
    watch.moved()                                  # a job finished, started or reported progress
    watch.check(lambda: describe_what_waits())     # each turn of the loop; says something when stalled
"""

from __future__ import annotations

import time
from collections.abc import Callable


class StallWatch:
    def __init__(self, stall_s: float | None, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        self.stall_s = stall_s if stall_s and stall_s > 0 else None
        self.say = say
        self.clock = clock
        self.last_move = clock()
        self.last_said = 0.0
        self.said: list[str] = []  # every stall report of this run (for the manifest)

    def moved(self) -> None:
        self.last_move = self.clock()

    def check(self, describe: Callable[[], str]) -> str | None:
        """If stalled (and not said in the last `stall_s`), say what `describe()` returns; return it."""
        if self.stall_s is None:
            return None
        now = self.clock()
        idle = now - self.last_move
        if idle < self.stall_s or now - self.last_said < self.stall_s:
            return None
        self.last_said = now
        text = f"stalled: no job has finished or moved for {idle:.0f} s.\n{describe()}"
        self.said.append(text)
        self.say(text)
        return text
