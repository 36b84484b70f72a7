"""Writes to one SQLite database (the cache index, the journal) from many threads, committed together.

Fifty job threads that each took a lock, wrote and committed, queued behind one another: SQLite releases the
GIL inside every call, and the lock holder then waited behind the other runnable threads to get it back, for
each statement. In a 100-job remote run a `submitted` record (written before the first poll) waited up to
0.7 s and an observed render time 0.8 s, each late poll and each late hand-over costing the run its time.

Here a thread with a change either finds a writer at work and hands it the change, or becomes the writer: it
commits every change waiting at that moment (its own among them) in one transaction. Each caller still
returns only once its own change is committed, so what was durable before a step (the journal entry before
a submit is sent) still is. Example::

    writes = GroupWriter(db)
    writes.apply(lambda db: db.set(key, value))   # committed, perhaps with others', when this returns
    with writes:                                  # alone: no group commit runs meanwhile
        db.delete(key)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["GroupWriter"]

T = TypeVar("T")


class _Change(Generic[T]):
    def __init__(self, fn: Callable[[Any], T]):
        self.fn = fn
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class GroupWriter:
    """Group commit for one diskcache database: `apply(fn)` runs `fn(db)` in a transaction with whatever other
    changes are waiting, and returns its result once committed. `with writer:` writes alone."""

    def __init__(self, db: Any):
        self._db = db
        self._cond = threading.Condition()
        self._pending: list[_Change[Any]] = []
        self._busy = False  # a thread is committing, or holds the writer alone

    def apply(self, fn: Callable[[Any], T]) -> T:
        change: _Change[T] = _Change(fn)
        with self._cond:
            self._pending.append(change)
            while self._busy and not change.done:
                self._cond.wait()
            if change.done:  # another thread committed it
                return change.outcome()
            # Not done and nobody writing: it is still pending (a writer marks what it took done before it
            # lets go), so this thread commits it, with everything else waiting now.
            self._busy = True
            batch, self._pending = self._pending, []
        try:
            self._commit(batch)
        except BaseException:  # e.g. KeyboardInterrupt in the middle: the others' changes go to the next writer
            with self._cond:
                self._pending[:0] = [c for c in batch if not c.done and c is not change]
            raise
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return change.outcome()

    def _commit(self, batch: list[_Change[Any]]) -> None:
        try:
            with self._db.transact():
                values = [c.fn(self._db) for c in batch]
        except Exception:
            # One change failed (and rolled back all of them): each is committed alone, so each caller gets
            # its own outcome and no change fails for another's fault.
            for c in batch:
                try:
                    with self._db.transact():
                        c.value = c.fn(self._db)
                except Exception as exc:
                    c.error = exc
                c.done = True
            return
        for c, value in zip(batch, values, strict=True):
            c.value, c.done = value, True

    def __enter__(self) -> GroupWriter:
        with self._cond:
            while self._busy:
                self._cond.wait()
            self._busy = True
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()
