"""Per-provider limits: how many jobs may be at the provider at once, and how often its API may be called.

A provider limits an account, not a model, so every backend of one provider and base URL in the process
draws on one `ProviderPool` (the three GMI models share one). Example::

    pool = ProviderPool.join("gmi", "https://console.gmicloud.ai", backend, max_in_flight=4, rps=5.0)
    with pool.slot(cancel):       # one of 4 jobs at the provider
        pool.throttle(cancel)     # this API call's turn at 5 calls a second
        ...

and, for the whole process, `SUBMITS`: downloads of finished renders give way to submits in progress.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from wanbatch.errors import Cancelled


class ProviderPool:
    """In-flight slots and a request-rate limit shared by every backend of one provider account in the
    process (the three GMI models draw on one pool). Where their configs differ, the strictest applies."""

    _pools: ClassVar[dict[tuple[str, str], ProviderPool]] = {}
    _pools_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._members: weakref.WeakKeyDictionary[object, tuple[int, float | None]] = weakref.WeakKeyDictionary()
        self.in_flight = 0
        self.peak = 0  # most jobs in flight at once (for tests and reports)
        self._next_request = 0.0

    @classmethod
    def join(cls, provider: str, base_url: str, member: object, max_in_flight: int, rps: float | None) -> ProviderPool:
        with cls._pools_lock:
            pool = cls._pools.setdefault((provider, base_url.rstrip("/")), ProviderPool())
        with pool._cond:
            pool._members[member] = (max_in_flight, rps)
            pool._cond.notify_all()
        return pool

    def leave(self, member: object) -> None:
        with self._cond:
            self._members.pop(member, None)
            self._cond.notify_all()

    def _capacity(self) -> int:
        return min((m for m, _ in self._members.values()), default=1)

    def _interval(self) -> float:
        rates = [r for _, r in self._members.values() if r]
        return 1.0 / min(rates) if rates else 0.0

    @contextmanager
    def slot(self, cancel: threading.Event) -> Iterator[None]:
        """Hold one of `max_in_flight` slots while a job is at the provider (submit to its final state)."""
        with self._cond:
            while self.in_flight >= self._capacity():
                if cancel.is_set():
                    raise Cancelled("cancelled while waiting for a free slot; nothing was sent")
                self._cond.wait(0.2)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

    def throttle(self, cancel: threading.Event) -> None:
        """Wait for this call's turn under `requests_per_second` (evenly spaced, no bursts)."""
        with self._cond:
            now = time.monotonic()
            at = max(now, self._next_request)
            self._next_request = at + self._interval()
        if at > now and cancel.wait(at - now):
            raise Cancelled("cancelled")


class SubmitsFirst:
    """Sending jobs goes before fetching finished ones, in the whole process: a finished render's download
    waits while submit requests are out (at most `WAIT_S`). A provider slot freed by a finished job is
    taken by the next job at once; its submit, and the polls that free the next slots, then do not share
    this process's one interpreter lock (and a small machine's cores) with fifty downloads, their checks and
    their stores. The video waits a fraction of a second (its URL lasts minutes to hours); the next paid job
    starts sooner. Measured on the fake provider, 100 jobs x 2 s, 50 in flight, on 2 cores: the run ends
    ~0.2 s sooner (the second wave's fifty submits no longer trail behind the first wave's downloads).
    Example::

        with SUBMITS.sending():        # around a submit's HTTP request
            ...
        SUBMITS.wait_turn()            # before a download
    """

    WAIT_S = 1.0  # a submit can hang until its read timeout: a paid video never waits longer than this

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.pending = 0  # submit requests out now
        self.waiting = 0  # downloads waiting for them (for tests)

    @contextmanager
    def sending(self) -> Iterator[None]:
        with self._cond:
            self.pending += 1
        try:
            yield
        finally:
            with self._cond:
                self.pending -= 1
                if not self.pending:
                    self._cond.notify_all()

    def wait_turn(self) -> None:
        """Return once no submit is out, or after WAIT_S."""
        with self._cond:
            if not self.pending:
                return
            self.waiting += 1
            try:
                self._cond.wait_for(lambda: not self.pending, timeout=self.WAIT_S)
            finally:
                self.waiting -= 1


SUBMITS = SubmitsFirst()  # one per process: what is shared is the process's CPU, not a provider's

__all__ = ["SUBMITS", "ProviderPool", "SubmitsFirst"]
