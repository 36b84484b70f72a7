"""Group commit: changes that arrive while one is being written are committed together, each caller returns
once its own change is durable, and one bad change fails only its own caller."""

from __future__ import annotations

import contextlib
import threading
import time

import diskcache
import pytest

from wanbatch.cache.group import GroupWriter


class _Counting:
    """A diskcache index that counts its transactions."""

    def __init__(self, path):
        self.db = diskcache.Cache(str(path))
        self.transactions = 0

    @contextlib.contextmanager
    def transact(self):
        self.transactions += 1
        with self.db.transact():
            yield

    def __getattr__(self, name):
        return getattr(self.db, name)


def _held(then):
    """A change that holds its writer inside the transaction until `release` is set, then does `then(db)`."""
    inside, release = threading.Event(), threading.Event()

    def change(d):
        inside.set()
        assert release.wait(60)
        return then(d)

    return change, inside, release


def _behind(writes, leader, others, release) -> None:
    """Start `others` while `leader` holds the writer; once all their changes wait, let it go; join them all."""
    for t in others:
        t.start()
    _until(lambda: len(writes._pending) == len(others), f"the {len(others)} changes did not queue")
    release.set()
    for t in [leader, *others]:
        t.join(60)


def _until(predicate, what: str) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_changes_that_wait_are_committed_together_and_each_caller_sees_its_own(tmp_path):
    db = _Counting(tmp_path / "db")
    writes = GroupWriter(db)
    # the first writer is held inside its transaction while 19 more changes arrive
    held, inside, release = _held(lambda d: (d.set("first", 0), "first")[1])

    results: dict[int, object] = {}
    first = threading.Thread(target=lambda: results.__setitem__(-1, writes.apply(held)))
    first.start()
    assert inside.wait(60)
    threads = [
        threading.Thread(
            target=lambda i=i: results.__setitem__(i, writes.apply(lambda d, i=i: (d.set(f"k{i}", i), i)[1]))
        )
        for i in range(19)
    ]
    _behind(writes, first, threads, release)
    assert results == {-1: "first", **{i: i for i in range(19)}}
    assert db.transactions == 2  # the held one, then the 19 that waited for it, in one
    assert [db.db.get(f"k{i}") for i in range(19)] == list(range(19)) and db.db.get("first") == 0


def test_a_failing_change_fails_its_caller_only(tmp_path):
    db = _Counting(tmp_path / "db")
    writes = GroupWriter(db)
    held, inside, release = _held(lambda d: d.set("held", 1))

    def bad(d):
        d.set("bad", 1)
        raise ValueError("this change is wrong")

    errors: list[BaseException] = []

    def call(fn):
        try:
            writes.apply(fn)
        except ValueError as exc:
            errors.append(exc)

    leader = threading.Thread(target=call, args=(held,))
    leader.start()
    assert inside.wait(60)
    others = [
        threading.Thread(target=call, args=(fn,)) for fn in (lambda d: d.set("a", 1), bad, lambda d: d.set("b", 1))
    ]
    _behind(writes, leader, others, release)
    assert [str(e) for e in errors] == ["this change is wrong"]
    assert db.db.get("a") == db.db.get("b") == db.db.get("held") == 1
    assert db.db.get("bad") is None  # rolled back with its failure


def test_writing_alone_keeps_group_commits_out(tmp_path):
    db = _Counting(tmp_path / "db")
    writes = GroupWriter(db)
    done = threading.Event()
    with writes:
        t = threading.Thread(target=lambda: (writes.apply(lambda d: d.set("x", 1)), done.set()))
        t.start()
        _until(lambda: len(writes._pending) == 1, "the change did not queue")
        assert not done.is_set() and db.db.get("x") is None
        db.db.set("alone", 1)
    t.join(60)
    assert done.is_set() and db.db.get("x") == 1


def test_an_interrupted_writer_leaves_the_others_changes_to_the_next(tmp_path):
    db = _Counting(tmp_path / "db")
    writes = GroupWriter(db)

    def boom(d):
        raise KeyboardInterrupt

    interrupted, inside, release = _held(boom)

    caught: list[BaseException] = []

    def lead():
        try:
            writes.apply(interrupted)
        except KeyboardInterrupt as exc:
            caught.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    assert inside.wait(60)
    other = threading.Thread(target=lambda: writes.apply(lambda d: d.set("other", 1)))
    other.start()
    _until(lambda: len(writes._pending) == 1, "the change did not queue")
    release.set()
    for t in (leader, other):
        t.join(60)
    assert len(caught) == 1 and db.db.get("other") == 1


@pytest.mark.parametrize("threads", [50])
def test_many_writers_at_once_all_land(tmp_path, threads):
    """A journal as fifty job threads use it: every record read back as written."""
    from wanbatch.cache.store import Journal

    journal = Journal(tmp_path / "journal")
    go = threading.Barrier(threads)

    def job(i: int) -> None:
        go.wait(60)
        journal.record(f"key{i}", state="submitting")
        journal.record(f"key{i}", request_id=f"r{i}", state="submitted")
        journal.observe("kind", float(i))

    pool = [threading.Thread(target=job, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    for i in range(threads):
        entry = journal.get(f"key{i}")
        assert entry is not None and (entry["request_id"], entry["state"]) == (f"r{i}", "submitted")
    assert journal.expected("kind") is not None
