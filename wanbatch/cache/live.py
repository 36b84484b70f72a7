"""Runs alive on a cache, so that nothing a run relies on is taken from under it.

Each run registers itself in `cache.dir/runs/` for its lifetime: `<id>.json` (when it started, the keys of
its plan) and `<id>.lock`, a file lock it holds until it ends. A registration whose lock can be taken is
of a run that died; it is removed by whoever notices. From the live registrations:

- `cache prune` keeps every entry a live run may use (cached or about to be stored), and its blob;
- leftovers (`tmp/*` scratch folders, `.partial` blobs) older than every live run are swept, at the start
  of a run and by `cache prune`/`doctor`: whatever wrote them has ended, killed or out of disk space.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

# A file's times come from a coarse kernel clock (a few ms behind time.time()), and a folder's mtime can
# be a little older than its newest file: leftovers count as older than a run only by this margin.
MARGIN_S = 5.0


@dataclass(frozen=True)
class LiveRun:
    id: str
    pid: int
    host: str
    started: float
    keys: frozenset[str]


class Registration:
    """This process's run, registered on a cache until `close()`. Example::

    with Registration(cache.dir, [job.key for job in plan.jobs]) as reg:
        ...  # prune keeps these keys; reg.add([film_key]) when there is more
    """

    def __init__(self, cache_dir: Path, keys: Iterable[str]):
        self.folder = cache_dir / "runs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.started = time.time()
        self.keys: set[str] = set(keys)
        self._lock = FileLock(str(self.folder / f"{self.id}.lock"), thread_local=False)
        self._lock.acquire()
        self._write()

    def add(self, keys: Iterable[str]) -> None:
        new = set(keys) - self.keys
        if new:
            self.keys |= new
            self._write()

    def _write(self) -> None:
        doc = {"pid": os.getpid(), "host": socket.gethostname(), "started": self.started, "keys": sorted(self.keys)}
        path = self.folder / f"{self.id}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            (self.folder / f"{self.id}.json").unlink()
        self._lock.release()
        with contextlib.suppress(OSError):
            (self.folder / f"{self.id}.lock").unlink()

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def live_runs(cache_dir: Path) -> list[LiveRun]:
    """The runs alive on this cache now. Registrations of runs that died are removed on the way."""
    folder = cache_dir / "runs"
    if not folder.is_dir():
        return []
    found: list[LiveRun] = []
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        lock = FileLock(str(path.with_suffix(".lock")), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:  # held: the run is alive
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # it ended (or is rewriting) just now
            found.append(
                LiveRun(path.stem, int(doc["pid"]), str(doc["host"]), float(doc["started"]), frozenset(doc["keys"]))
            )
            continue
        except OSError:
            continue  # a cache we may only read: every registration counts as gone
        try:  # nobody holds it: that run died without closing
            with contextlib.suppress(OSError):
                path.unlink()
        finally:
            lock.release()
            with contextlib.suppress(OSError):
                path.with_suffix(".lock").unlink()
    return found


def keys_in_use(cache_dir: Path) -> frozenset[str]:
    return frozenset().union(*(r.keys for r in live_runs(cache_dir)))


def changed_since(cache_dir: Path, mtime_ns: int) -> tuple[bool, int]:
    """Whether a run registered or ended since `mtime_ns` (the folder's mtime), and the mtime now."""
    try:
        now = (cache_dir / "runs").stat().st_mtime_ns
    except OSError:
        now = 0
    return now != mtime_ns, now


def horizon(cache_dir: Path) -> float:
    """A time before every live run started (less `MARGIN_S`): what is older is no live run's."""
    return min((r.started for r in live_runs(cache_dir)), default=time.time()) - MARGIN_S


def sweep_leftovers(cache_dir: Path) -> dict[str, int]:
    """Remove scratch folders (`tmp/*`) and `.partial` blobs older than every live run: each was left by a
    run that has ended (killed, or out of disk space). Returns how many of each, and the bytes freed."""
    since = horizon(cache_dir)
    swept = {"tmp": 0, "partial": 0, "bytes": 0}
    tmp = cache_dir / "tmp"
    for path in list(tmp.iterdir()) if tmp.is_dir() else []:
        try:
            if path.stat().st_mtime >= since:
                continue
            swept["bytes"] += _size(path)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        except OSError:
            continue
        swept["tmp"] += 1
    for path in (cache_dir / "blobs").glob("*/.*.partial"):
        try:
            st = path.stat()
            if st.st_mtime >= since:
                continue
            path.unlink()
        except OSError:
            continue
        swept["partial"] += 1
        swept["bytes"] += st.st_size
    return swept


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
