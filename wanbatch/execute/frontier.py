"""The plan's jobs as a DAG frontier: what waits, what is out, what has ended. Both executors keep their
books here and add only what is their own (threads and semaphores; Ray actors, tasks and retries).

A chained job is ready once its parent has a clip; if the parent ended without one (failed, cancelled),
the child fails too, with the reason. Ready jobs come grouped by (backend, model, scene index), so a warm
pipeline serves its jobs back to back. Every finished job is reported (`Reporter.update`) and handed to
`on_done` (the run's outputs) at once. Example::

    frontier = Frontier(plan.jobs, progress=progress, on_done=outputs.add)
    while not frontier.done:
        frontier.fail_blocked()
        for job in frontier.ready():
            frontier.start(job)
            ...                                   # later, from the same thread:
            frontier.finish(outcome)
    frontier.outcomes                             # {scene id: Outcome}

One thread drives a frontier (the executor's loop); workers hand their outcomes back to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from wanbatch.core.job import Job
from wanbatch.core.outcome import Outcome
from wanbatch.execute.reporter import Reporter, Silent


class Frontier:
    def __init__(
        self,
        jobs: Iterable[Job],
        *,
        progress: Reporter | None = None,
        on_done: Callable[[Outcome], None] = lambda _o: None,
    ):
        self.pending: dict[str, Job] = {j.id: j for j in jobs}  # not started (or put back)
        self.running: dict[str, Job] = {}  # started, not finished
        self.outcomes: dict[str, Outcome] = {}  # finished, in the order they finished
        self.progress: Reporter = progress or Silent()
        self.on_done = on_done
        self._first: set[str] = set()  # jobs put back after their worker died: taken before the others

    @property
    def done(self) -> bool:
        """Every job has finished."""
        return not self.pending and not self.running

    def ready(self) -> list[Job]:
        """Jobs that can start now (their parent, if any, has a clip): those put back `first` ahead of the
        rest, then by (backend, model, scene index), so jobs on one model follow each other."""
        return sorted(
            (j for j in self.pending.values() if j.parent is None or self._has_clip(j.parent)),
            key=lambda j: (j.id not in self._first, j.backend, j.model, j.scene.index),
        )

    def blocked(self) -> list[Job]:
        """Jobs that can never start: their parent ended without a clip."""
        return [
            j
            for j in self.pending.values()
            if j.parent is not None and j.parent in self.outcomes and not self.outcomes[j.parent].ok
        ]

    def fail_blocked(self) -> list[Outcome]:
        """Fail every blocked job, naming its parent; a chain fails to its end in one call."""
        failed: list[Outcome] = []
        while blocked := self.blocked():
            for job in blocked:
                outcome = Outcome(
                    job.id, "failed", job.key, model=job.model, error=f"parent scene `{job.parent}` did not finish"
                )
                self.finish(outcome)
                failed.append(outcome)
        return failed

    def parent_clip(self, job: Job) -> Path | None:
        """The clip a chained job starts from (its parent's, in the cache); None for an unchained job."""
        return self.outcomes[job.parent].clip if job.parent is not None else None

    def start(self, job: Job) -> None:
        """`job` is out (submitted to a thread, a task or an actor)."""
        del self.pending[job.id]
        self.running[job.id] = job

    def requeue(self, scene: str, *, first: bool = False) -> None:
        """Put a job back to wait: one that never started after all (its future was cancelled), or, with
        `first`, one to retry ahead of the others (its worker died under it)."""
        job = self.running.pop(scene)
        self.pending[scene] = job
        if first:
            self._first.add(scene)

    def finish(self, outcome: Outcome) -> None:
        """A job has ended, whether it was out or still waiting (a cache hit, a failure to start):
        record it, report it, hand it on."""
        self.pending.pop(outcome.scene, None)
        self.running.pop(outcome.scene, None)
        self._first.discard(outcome.scene)
        self.outcomes[outcome.scene] = outcome
        self.progress.update(outcome.scene, outcome.status, outcome.error or "")
        self.on_done(outcome)

    def cancel_rest(self) -> list[Outcome]:
        """After an interrupt: every job that has not started ends `cancelled`. (Jobs still out are the
        executor's to stop; it finishes them with what it knows.)"""
        cancelled = [
            Outcome(job.id, "cancelled", job.key, model=job.model, error="interrupted before it started")
            for job in list(self.pending.values())
        ]
        for outcome in cancelled:
            self.finish(outcome)
        return cancelled

    def _has_clip(self, scene: str) -> bool:
        outcome = self.outcomes.get(scene)
        return outcome is not None and outcome.ok


__all__ = ["Frontier"]
