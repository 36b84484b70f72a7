"""`wanbatch cache doctor`: check a cache through and through and put right what can be put right.

1. The index: opened checked (a missing or malformed one is moved aside and rebuilt from the sidecars), or
   rebuilt on request.
2. Every entry's blob, read and hashed: a missing or corrupt one is dropped with its entry (the next run
   renders that scene again, and repairs the run folders' copies of it).
3. Entries that only a sidecar still knows go back into the index; entries without a sidecar get one.
4. Leftovers of runs that ended (scratch folders, partial blobs) are removed.
5. The remote request journal is opened; an unreadable one is moved aside, with what that means.
Blobs that nothing knows (no entry, no sidecar) are counted; `cache prune` removes them.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import Timeout

from wanbatch.cache import index, live, sidecar
from wanbatch.cache.store import Cache


@dataclass
class Findings:
    notes: list[str] = field(default_factory=list)  # what was found and done, one line each
    entries: int = 0
    verified_bytes: int = 0
    dropped: list[str] = field(default_factory=list)  # keys whose blob was missing or corrupt
    restored: int = 0
    sidecars_written: int = 0
    orphans: int = 0
    seconds: float = 0.0


def doctor(cache_dir: Path, *, rebuild: bool = False) -> Findings:
    t0 = time.perf_counter()
    found = Findings()
    if rebuild:
        (cache_dir / "locks").mkdir(parents=True, exist_ok=True)
        index.rebuild(cache_dir, found.notes, "rebuilt on request").close()
    cache = Cache(cache_dir, readonly=False)
    try:
        found.notes += cache.notes
        _check_entries(cache, found)
        _check_sidecars(cache, found)
        swept = cache.sweep_leftovers()
        if swept["tmp"] or swept["partial"]:
            found.notes.append(
                f"removed leftovers of runs that ended: {swept['tmp']} scratch folder(s), "
                f"{swept['partial']} partial blob(s) ({swept['bytes'] / 1e6:.1f} MB)"
            )
        _check_journal(cache, found)
    finally:
        cache.close()
    found.seconds = round(time.perf_counter() - t0, 3)
    return found


def _check_entries(cache: Cache, found: Findings) -> None:
    for entry in list(cache.entries()):
        key = entry["key"]
        found.entries += 1
        state, _ = cache.verify(key)
        if state == "cached":
            found.verified_bytes += int(entry["size"])
            continue
        try:
            with cache.lock(key, timeout=0):
                if cache.fetch(key) is None:  # drops the entry, its sidecar and its blob
                    found.dropped.append(key)
                    what = entry.get("scene_id") or entry.get("backend") or "?"
                    found.notes.append(f"dropped {key} ({what}): its blob was missing or corrupt; a run renders it")
        except Timeout:
            found.notes.append(f"skipped {key}: in use by a run right now")


def _check_sidecars(cache: Cache, found: Findings) -> None:
    indexed = {e["key"]: e for e in cache.entries()}
    for entry in sidecar.entries(cache.dir, verify_size=True):
        if entry["key"] not in indexed:
            with cache._writing:
                cache._index.set(entry["key"], entry)
            indexed[entry["key"]] = entry
            found.restored += 1
    for key, entry in indexed.items():
        blob = cache.dir / "blobs" / str(entry["blob"])[:2] / f"{entry['blob']}.mp4"
        if blob.exists() and not sidecar.path_of(blob, key).exists():
            sidecar.write(blob, entry)
            found.sidecars_written += 1
    blobs = {e["blob"] for e in indexed.values()}
    found.orphans = sum(
        1
        for b in (cache.dir / "blobs").glob("*/*.mp4")
        if not b.name.startswith(".") and b.stem not in blobs and not sidecar.of_blob(b)
    )
    if found.restored:
        found.notes.append(f"put {found.restored} entries that only their sidecars knew back into the index")
    if found.sidecars_written:
        found.notes.append(f"wrote {found.sidecars_written} missing sidecars")
    if found.orphans:
        found.notes.append(f"{found.orphans} blobs belong to no entry (`wanbatch cache prune` removes them)")


def _check_journal(cache: Cache, found: Findings) -> None:
    folder = cache.dir / "journal"
    if not folder.exists():
        return
    try:
        db = index.open_db(folder)
        wrong = index.problem(db)
        db.close()
    except sqlite3.DatabaseError as exc:
        wrong = str(exc)
    if wrong is None:
        return
    if live.live_runs(cache.dir):
        found.notes.append(f"the request journal is unreadable ({wrong}); left as it is while runs are live")
        return
    aside = folder.with_name(f"journal.broken-{time.strftime('%Y%m%d-%H%M%S')}")
    with contextlib.suppress(OSError):
        folder.rename(aside)
    found.notes.append(
        f"the request journal was unreadable ({wrong}) and is now {aside}: remote renders that were in flight "
        "cannot be re-attached; check your providers' consoles before rendering those scenes again"
    )


def summary(found: Findings, cache_dir: Path) -> dict[str, Any]:
    return {
        "cache_dir": str(cache_dir),
        "entries": found.entries,
        "verified_mb": round(found.verified_bytes / 1e6, 3),
        "dropped": found.dropped,
        "restored": found.restored,
        "sidecars_written": found.sidecars_written,
        "orphan_blobs": found.orphans,
        "seconds": found.seconds,
        "notes": found.notes,
    }
