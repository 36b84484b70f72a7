"""The cache index (`cache.dir/index/`, a diskcache SQLite database: cache key -> entry): opened checked,
read without writing, and rebuilt from the blobs' sidecars when it is missing or malformed.

The index is only a fast way to the sidecars: every blob carries its entries beside it (see `sidecar.py`),
so a deleted or damaged index costs a rebuild, never a re-render. A broken index is moved aside
(`index.broken-<time>/`), never deleted, in case someone wants to look at it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import diskcache
from filelock import FileLock

from wanbatch.cache import sidecar

SCENE_PREFIX = "scene-keys:"  # scene id -> its recent keys (what `explain_miss` compares with)
RECENT_KEYS = 20
DB_FILE = "cache.db"


class Index(Protocol):
    """What the cache reads from its index (diskcache.Cache has all of it, and writes too)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def iterkeys(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


def open_db(directory: Path) -> diskcache.Cache:
    """The index or the journal, writable. Never culled: diskcache evicts by default (the least recently stored
    entries, once its database passes 1 GiB, some 700k entries), and an evicted index entry is a render paid for
    again, an evicted journal entry a request id lost. Without culling, a write also skips the three statements
    that check for it (expired keys, the page count, the size setting): fifty job threads write here at once.
    The settings are kept in the database, so a cache opened by an older wanbatch is switched over too."""
    return diskcache.Cache(str(directory), timeout=60, eviction_policy="none", cull_limit=0)


def problem(db: diskcache.Cache) -> str | None:
    """What is wrong with an open index, or None. SQLite's quick_check reads every page (about 2 ms per MB)."""
    try:
        rows = db._sql("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    found = [str(r[0]) for r in rows]
    return None if found == ["ok"] else "; ".join(found[:3])


def open_checked(cache_dir: Path, notes: list[str]) -> diskcache.Cache:
    """The index, writable. A missing index (with blobs on disk) or a malformed one is rebuilt from the
    sidecars first, with a note saying so. One process at a time checks, so two runs never both rebuild."""
    folder = cache_dir / "index"
    with FileLock(str(cache_dir / "locks" / "index.lock"), thread_local=False):
        if not (folder / DB_FILE).is_file():
            if sidecar.any_exist(cache_dir):
                moved = _move_aside(folder)
                return _rebuild(cache_dir, notes, "the cache index was missing", moved)
            return open_db(folder)
        try:
            db = open_db(folder)
        except sqlite3.DatabaseError as exc:
            return _rebuild(cache_dir, notes, f"the cache index was unreadable ({exc})", _move_aside(folder))
        wrong = problem(db)
        if wrong is None:
            return db
        db.close()
        return _rebuild(cache_dir, notes, f"the cache index was malformed ({wrong})", _move_aside(folder))


def rebuild(cache_dir: Path, notes: list[str], why: str) -> diskcache.Cache:
    """Move the index aside and build a new one from the sidecars (`wanbatch cache doctor --rebuild`)."""
    with FileLock(str(cache_dir / "locks" / "index.lock"), thread_local=False):
        return _rebuild(cache_dir, notes, why, _move_aside(cache_dir / "index"))


def _move_aside(folder: Path) -> Path | None:
    if not folder.exists():
        return None
    aside = folder.with_name(f"index.broken-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}")
    folder.rename(aside)
    return aside


def _rebuild(cache_dir: Path, notes: list[str], why: str, moved: Path | None) -> diskcache.Cache:
    db = open_db(cache_dir / "index")
    entries = list(sidecar.entries(cache_dir, verify_size=True))
    with db.transact():
        for entry in entries:
            db.set(entry["key"], entry)
        for scene_id, keys in recent_keys(entries).items():
            db.set(f"{SCENE_PREFIX}{scene_id}", keys)
    where = f"; the old one is in {moved}" if moved is not None else ""
    notes.append(f"{why}: rebuilt it from the blobs' sidecars ({len(entries)} entries){where}")
    return db


def recent_keys(entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each scene's most recent keys, oldest first, as `Cache.put` keeps them."""
    by_scene: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        if e.get("scene_id"):
            by_scene.setdefault(str(e["scene_id"]), []).append(e)
    return {
        sid: [e["key"] for e in sorted(es, key=lambda e: e.get("created", 0))][-RECENT_KEYS:]
        for sid, es in by_scene.items()
    }


class ReadOnlyIndex:
    """The index read straight from SQLite without writing anything (a read-only cache, a dry run).

    diskcache cannot open a database it may not write, so this reads its table itself and decodes values with
    diskcache's own `Disk`. `immutable=1` is the fallback for a folder SQLite may not even create a lock in."""

    def __init__(self, folder: Path):
        path = folder / DB_FILE
        self._disk = diskcache.Disk(str(folder))
        self._lock = threading.Lock()  # one connection, shared by a dry run's verifying threads
        self._con: sqlite3.Connection | None = None
        for mode in ("mode=ro", "immutable=1"):
            con = sqlite3.connect(f"file:{path}?{mode}", uri=True, check_same_thread=False)
            try:
                con.execute("SELECT count(*) FROM Cache").fetchall()
            except sqlite3.OperationalError as exc:
                con.close()
                if "no such table" in str(exc):
                    # The file is there, its table not yet: another process is creating this database right
                    # now (diskcache makes the file, then the table). Nothing is in it.
                    return
                if mode == "immutable=1":
                    raise
                continue
            self._con = con
            return

    def get(self, key: str, default: Any = None) -> Any:
        if self._con is None:
            return default
        with self._lock:
            row = self._con.execute(
                "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1", (key,)
            ).fetchone()
        if row is None:
            return default
        return self._disk.fetch(row[0], row[1], row[2], False)

    def iterkeys(self) -> Iterator[Any]:
        if self._con is None:
            return
        with self._lock:
            keys = self._con.execute("SELECT key FROM Cache WHERE raw = 1 ORDER BY rowid").fetchall()
        for (key,) in keys:
            yield key

    def close(self) -> None:
        if self._con is not None:
            self._con.close()


class MemoryIndex:
    """An index held in memory, built from the sidecars: what a read-only look at a cache whose index is
    missing or malformed gets (nothing is written; a run or `wanbatch cache doctor` rebuilds it on disk)."""

    def __init__(self, cache_dir: Path):
        entries = list(sidecar.entries(cache_dir, verify_size=True))
        self._data: dict[str, Any] = {e["key"]: e for e in entries}
        for scene_id, keys in recent_keys(entries).items():
            self._data[f"{SCENE_PREFIX}{scene_id}"] = keys

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def iterkeys(self) -> Iterator[Any]:
        return iter(list(self._data))

    def close(self) -> None:
        pass


def open_readonly(cache_dir: Path, notes: list[str]) -> Index:
    """The index for reading only; from the sidecars (in memory) when it is missing or malformed."""
    folder = cache_dir / "index"
    why = "missing"
    if (folder / DB_FILE).is_file():
        try:
            ro = ReadOnlyIndex(folder)
            if ro._con is not None:  # (None: another process is creating it; as good as missing)
                rows = ro._con.execute("PRAGMA quick_check").fetchall()
                if [str(r[0]) for r in rows] == ["ok"]:
                    return ro
                ro.close()
                why = "malformed"
        except sqlite3.DatabaseError as exc:
            why = f"unreadable ({exc})"
    memory = MemoryIndex(cache_dir)
    if len(memory) or why != "missing":
        notes.append(
            f"the cache index is {why}: read {sum(1 for k in memory.iterkeys() if not str(k).startswith(SCENE_PREFIX))}"
            " entries from the blobs' sidecars instead (a run or `wanbatch cache doctor` rebuilds it)"
        )
    return memory
