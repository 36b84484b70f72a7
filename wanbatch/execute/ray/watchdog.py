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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wanbatch.execute.ray.resources import Reservations


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


@dataclass(frozen=True)
class Waiting:
    """A job that has not started, and why: `parent` (its parent has no clip yet; `detail` names it), `key`
    (another process holds its cache key), or its backend's kind: `local` (a render actor), `remote`, `cpu`."""

    scene: str
    what: str
    detail: str = ""


def report(
    waiting: list[Waiting],
    out: list[tuple[str, str, float]],
    busy_actors: int,
    res: Reservations,
    free: Mapping[str, float],
    total: Mapping[str, float],
) -> str:
    """The body of a stall report: what each waiting job needs, what is out (scene, where, for how long),
    what the cluster has free and what the run reserves."""
    gpu = "1 GPU + " if res.actor_gpus else ""
    needs = {
        "key": "its cache key, which another process holds (rendering it)",
        "local": f"a free render actor ({gpu}{res.actor_cpus:.3g} CPU each; {busy_actors} of {res.actors} busy)",
        "remote": "a remote-API task (no CPU) on this node, within its provider's max_in_flight",
        "cpu": f"a preview task ({res.task_cpus:.3g} CPU)",
    }
    waits = [
        f"  {w.scene} waits for " + (f"its parent scene `{w.detail}`" if w.what == "parent" else needs[w.what])
        for w in waiting
    ]
    gone = [f"  {scene} on {where} for {age:.0f} s" for scene, where, age in out] or ["  none"]
    have = ", ".join(f"{k} {free.get(k, 0):g} of {total.get(k, 0):g} free" for k in ("CPU", "GPU") if k in total)
    return "\n".join(
        [
            f"{len(waits)} job(s) wait:",
            *waits,
            f"{len(out)} out:",
            *gone,
            f"cluster: {have}",
            f"reserved: {res.describe()}",
        ]
    )
