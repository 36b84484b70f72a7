"""Calls that move a provider's queue go first, in the whole process: what follows a finished render (its
download, its poster) waits while API calls are out, at most `WAIT_S`.

A remote run's jobs finish in waves (fifty submitted together come back together). At a wave's end fifty
status polls, the next wave's fifty submits, and the finished jobs' downloads, checks, stores and posters all
want this process's one interpreter lock (and a small machine's two cores). A poll's answer frees a provider
slot and a submit fills it: both are on the path to the run's end. A download and a poster have the whole
next wave's render to be done in. A poll waited for the lock behind that work: its answer came 0.2-0.5 s
late, and the next job's submit with it. Measured on the fake provider, 100 jobs x 2 s, 50 in flight, on
2 cores: the run ends ~0.3 s sooner than when downloads gave way to submits only (and ~0.5 s sooner than when
nothing gave way). The video waits a fraction of a second (its URL lasts minutes to hours). Example::

    with CALLS_FIRST.calling():    # around a submit's, a poll's or a list's HTTP request
        ...
    CALLS_FIRST.wait_turn()        # before a download, before cutting posters during the run
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CALLS_FIRST", "CallsFirst"]


class CallsFirst:
    """Counts API calls in progress; `wait_turn` returns once none is (or after WAIT_S)."""

    # A call can hang until its read timeout, and with thousands of jobs a poll is nearly always out: whatever
    # waits here never waits longer than this.
    WAIT_S = 1.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.pending = 0  # API calls out now
        self.waiting = 0  # downloads and poster batches waiting for them (for tests)

    @contextmanager
    def calling(self) -> Iterator[None]:
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
        """Return once no API call is out, or after WAIT_S."""
        with self._cond:
            if not self.pending:
                return
            self.waiting += 1
            try:
                self._cond.wait_for(lambda: not self.pending, timeout=self.WAIT_S)
            finally:
                self.waiting -= 1


CALLS_FIRST = CallsFirst()  # one per process: what is shared is the process's CPU, not a provider's
