"""`executor=local`: the plan's jobs on a thread pool in this process.

Independent jobs are at work concurrently up to `executor.concurrency`; each backend also bounds its own
jobs (`backend.max_in_flight`: a provider's concurrency limit, or one job per device for local GPUs).
A remote job stops counting once the provider is done with it (`RenderContext.off_backend`): its download,
check and store run on a spare thread while the next job is already submitted, so a provider slot never
idles behind a download.
Ready jobs are taken grouped by (backend, model), so a warm pipeline serves its jobs back to back.
A chained job starts when its parent's clip is in the cache; if the parent failed, so does it. (That
bookkeeping is `execute/frontier.py`'s, shared with `executor=ray`; this module owns the threads.)
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import partial
from pathlib import Path

from wanbatch.av.encode import EncodeSettings
from wanbatch.cache.store import Cache
from wanbatch.config.schema import EncodeConfig
from wanbatch.core.backend import BackendKind, RenderContext
from wanbatch.core.job import Job
from wanbatch.core.outcome import Outcome
from wanbatch.core.plan import Plan
from wanbatch.execute.common import render_and_store
from wanbatch.execute.frontier import Frontier
from wanbatch.execute.reporter import Reporter, Silent


class LocalExecutor:
    def __init__(
        self,
        cache: Cache,
        *,
        concurrency: int,
        encode: EncodeSettings | None = None,
        progress: Reporter | None = None,
        cancel: threading.Event | None = None,
    ):
        self.cache = cache
        self.concurrency = max(1, concurrency)
        self.encode = encode or EncodeConfig()
        self.progress: Reporter = progress or Silent()
        self.cancel = cancel or threading.Event()
        self.abandon = threading.Event()  # a second Ctrl-C: leave even the downloads of paid renders

    def run(
        self,
        plan: Plan,
        on_done: Callable[[Outcome], None] = lambda _o: None,
        on_idle: Callable[[], None] | None = None,
    ) -> dict[str, Outcome]:
        """Run every job; returns outcomes by scene id. On KeyboardInterrupt, stops starting jobs, lets
        running ones stop at their next safe point, keeps every finished clip, then re-raises. A render that
        is paid for (done at its provider) still downloads and is cached, unless Ctrl-C comes again.
        `on_idle` is called once, the first time half a second passes with jobs out and none landing."""
        # Remote backends bound themselves per provider account (shared by every backend of a provider, and
        # released as soon as the provider is done, before the download): a second limit here would hold
        # their slots through download and check. Every other backend is bounded here.
        limits = {
            name: (
                contextlib.nullcontext()
                if b.kind == BackendKind.REMOTE
                else threading.BoundedSemaphore(max(1, b.max_in_flight))
            )
            for name, b in plan.backends.items()
        }
        frontier = Frontier(plan.jobs, progress=self.progress, on_done=on_done)
        running: dict[Future[Outcome], str] = {}

        at_work = threading.Semaphore(self.concurrency)
        paid: set[str] = set()  # jobs done at their provider, their video still to fetch
        paid_lock = threading.Lock()
        # How each job's thread ended, written by the thread itself: a Ctrl-C can land between a submit and
        # its bookkeeping, and then this is where the outcome is found once the threads have ended.
        ended: dict[str, Outcome] = {}

        order = _InOrder()

        def task(job: Job, parent_clip: Path | None, ticket: tuple[str, int]) -> Outcome:
            backend = plan.backends[job.backend]
            with contextlib.ExitStack() as held:
                # Threads start in any order: slots are taken in the order the jobs were handed out (grouped
                # by model), so a job cannot overtake an earlier one of its backend and make a device switch
                # models twice; `expect` then tells the backend which jobs are on their way.
                with order.turn(ticket):
                    at_work.acquire()
                    release = _Once(at_work.release)
                    held.callback(release)
                    held.enter_context(limits[job.backend])
                    backend.expect(job)
                held.callback(backend.settle, job)
                return run(job, parent_clip, release)

        def run(job: Job, parent_clip: Path | None, release: _Once) -> Outcome:
            def off_backend() -> None:
                with paid_lock:
                    paid.add(job.id)
                release()

            try:
                if self.cache.peek(job.key) is None:  # a cached scene goes straight to "cached", not via running
                    self.progress.update(job.id, "running")

                def ctx_factory(workdir: Path) -> RenderContext:
                    return RenderContext(
                        workdir=workdir,
                        journal=self.cache.journal,
                        encode=self.encode,
                        cancel=self.cancel,
                        abandon=self.abandon,
                        status=partial(self.progress.update, job.id, "running"),
                        off_backend=off_backend,
                    )

                outcome = render_and_store(self.cache, plan.backends[job.backend], job, ctx_factory, parent_clip)
                with paid_lock:
                    ended[job.id] = outcome
                return outcome
            finally:
                with paid_lock:
                    paid.discard(job.id)

        interrupted = all_ended = False
        # Threads beyond `concurrency` are for jobs past their backend (downloading) and jobs queued for `at_work`.
        pool = ThreadPoolExecutor(max_workers=self.concurrency * 2, thread_name_prefix="wanbatch-job")
        try:
            try:
                while not frontier.done:
                    frontier.fail_blocked()
                    for job in frontier.ready()[: max(0, self.concurrency * 2 - len(running))]:
                        frontier.start(job)
                        ticket = order.ticket(job.backend)
                        fut = pool.submit(task, job, frontier.parent_clip(job), ticket)
                        fut.add_done_callback(partial(_give_up_turn, order, ticket))
                        running[fut] = job.id
                    if not running:
                        continue
                    done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                    if not done and on_idle is not None:
                        idle, on_idle = on_idle, None
                        idle()
                    for fut in done:  # finished before it is forgotten: a Ctrl-C in between loses nothing
                        frontier.finish(fut.result())
                        del running[fut]
                all_ended = True
            except KeyboardInterrupt:
                interrupted = True
                self.cancel.set()
                said: list[str] = []
                while True:  # a second Ctrl-C, wherever it lands while winding down, leaves the downloads too
                    try:
                        self._wind_down(frontier, running, paid, paid_lock, said)
                        break
                    except KeyboardInterrupt:
                        self.abandon.set()
        finally:
            # Once every job has ended, the idle workers are let go rather than joined one by one (a hundred
            # of them took 10-25 ms, between the last clip and the film). Otherwise (a Ctrl-C, an error) every
            # thread is waited for: a job it ran may be paid for, and what that is must not be lost.
            pool.shutdown(wait=not all_ended)

        if interrupted:
            # The threads have ended. A job started in the very moment of the Ctrl-C, and so never waited
            # for above, ends as its thread ended it (or cancelled, if it never ran).
            for scene in list(frontier.running):
                job = frontier.running[scene]
                frontier.finish(
                    ended.get(scene)
                    or Outcome(scene, "cancelled", job.key, model=job.model, error="interrupted before it started")
                )
            raise KeyboardInterrupt
        return frontier.outcomes

    def _wind_down(
        self,
        frontier: Frontier,
        running: dict[Future[Outcome], str],
        paid: set[str],
        paid_lock: threading.Lock,
        said: list[str],
    ) -> None:
        """After Ctrl-C: jobs not started go back (and end cancelled), running ones stop at their next safe
        point, finished clips are kept, and renders already paid for finish their download. Safe to call
        again (a second Ctrl-C in here calls it again, with `abandon` set)."""
        for fut in list(running):
            if fut.cancel():
                frontier.requeue(running.pop(fut))
        with paid_lock:
            downloading = sorted(paid & set(running.values()))
        if downloading and not said:
            said.append("downloads")
            print(
                f"interrupted: {len(downloading)} render(s) already paid for are finishing their download "
                f"({', '.join(downloading[:5])}{', ...' if len(downloading) > 5 else ''}); Ctrl-C again "
                "to leave them (their request ids stay in the journal)",
                file=sys.stderr,
                flush=True,
            )
        # The wait wakes twice a second, so a second Ctrl-C is seen even while every job is busy downloading.
        while running:
            try:
                done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    frontier.finish(fut.result())
                    del running[fut]
            except KeyboardInterrupt:
                self.abandon.set()
        frontier.cancel_rest()


def _give_up_turn(order: _InOrder, ticket: tuple[str, int], fut: Future[Outcome]) -> None:
    if fut.cancelled():  # its thread never ran: the jobs after it must not wait for it
        order.done(ticket)


class _InOrder:
    """Turns per backend: ticket n of a backend goes once tickets 0..n-1 of it have gone (or were cancelled).
    A ticket's thread waits on an event of its own, set when its turn comes: fifty threads waiting on one
    condition were all woken at every turn, to find it was not theirs (thousands of wake-ups in a burst of
    remote jobs, each taking the GIL from the ones with work to do)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._issued: dict[str, int] = {}
        self._next: dict[str, int] = {}
        self._gone: set[tuple[str, int]] = set()
        self._waiting: dict[tuple[str, int], threading.Event] = {}

    def ticket(self, backend: str) -> tuple[str, int]:
        with self._lock:
            n = self._issued.get(backend, 0)
            self._issued[backend] = n + 1
            return (backend, n)

    @contextlib.contextmanager
    def turn(self, ticket: tuple[str, int]) -> Iterator[None]:
        backend, n = ticket
        with self._lock:
            mine = None if self._next.get(backend, 0) == n else self._waiting.setdefault(ticket, threading.Event())
        if mine is not None:
            mine.wait()
        try:
            yield
        finally:
            self.done(ticket)

    def done(self, ticket: tuple[str, int]) -> None:
        """`ticket` has had its turn, or never will (its job was cancelled before it started)."""
        backend = ticket[0]
        with self._lock:
            self._gone.add(ticket)
            while (backend, self._next.get(backend, 0)) in self._gone:
                self._gone.discard((backend, self._next.get(backend, 0)))
                self._next[backend] = self._next.get(backend, 0) + 1
            # the ticket whose turn it now is (its thread may not be waiting yet: then it finds out itself)
            waiting = self._waiting.pop((backend, self._next.get(backend, 0)), None)
        if waiting is not None:
            waiting.set()


class _Once:
    """A callable that calls `fn` the first time only (a job releases its slot once, early or at its end)."""

    def __init__(self, fn: Callable[[], object]):
        self._fn, self._lock, self._done = fn, threading.Lock(), False

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._fn()
