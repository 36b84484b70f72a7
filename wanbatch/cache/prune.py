"""`cache prune`: drop old entries, then what no entry needs, without taking anything from a run in progress.

What is kept, whatever its age:
- an entry a live run uses (its plan's keys, see `live.py`): cached clips it will link, renders it will store;
- an entry whose lock is held (being rendered, stored or read by some process right now);
- a blob that has a sidecar (each sidecar is an entry that is kept), and one younger than every live run;
- scratch folders and `.partial` blobs younger than every live run.
Entries that only a sidecar still knows (the index lost them) are put back into the index, not deleted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any, Protocol

from filelock import Timeout

from wanbatch.cache import checked, links, live, sidecar
from wanbatch.cache.group import GroupWriter


class Prunable(Protocol):
    dir: Path
    _index: Any
    _writing: GroupWriter  # `with` it: writes alone

    def lock(self, key: str, timeout: float = -1) -> AbstractContextManager[None]: ...

    def entries(self) -> Iterator[dict[str, Any]]: ...


class _InUse:
    """The keys of the live runs, read again whenever a run registers or ends while the prune goes on."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = cache_dir
        self.mtime = -1
        self.keys: frozenset[str] = frozenset()
        self.horizon = 0.0  # when the oldest live run started: what is older than this is no live run's
        self._refresh()

    def _refresh(self) -> None:
        changed, self.mtime = live.changed_since(self.cache_dir, self.mtime)
        if changed:
            runs = live.live_runs(self.cache_dir)
            self.keys = frozenset().union(*(r.keys for r in runs))
            self.horizon = min((r.started for r in runs), default=time.time()) - live.MARGIN_S

    def __contains__(self, key: str) -> bool:
        self._refresh()
        return key in self.keys


def prune(cache: Prunable, *, older_than_s: float | None, everything: bool) -> dict[str, int]:
    now = time.time()
    in_use = _InUse(cache.dir)
    stats = {"entries": 0, "blobs": 0, "bytes": 0, "in_use": 0, "restored": 0}
    indexed = {e["key"]: e for e in cache.entries()}
    known = {e["key"]: e for e in sidecar.entries(cache.dir, verify_size=False)}

    def old(entry: dict[str, Any]) -> bool:
        return everything or (older_than_s is not None and now - float(entry.get("created", 0)) > older_than_s)

    # 1. Entries: old ones go (with their sidecar and link record), unless in use; lost ones come back.
    freed: set[str] = set()  # blobs of the entries dropped here
    for key, entry in {**known, **indexed}.items():
        if not old(entry):
            if key not in indexed:
                with cache._writing:
                    cache._index.set(key, entry)
                stats["restored"] += 1
            continue
        if not _drop(cache, entry, in_use):
            stats["in_use"] += 1
            continue
        freed.add(str(entry["blob"]))
        stats["entries"] += 1

    # 2. Blobs that no entry needs: no sidecar left, not indexed; and either freed above or older than every
    # live run (one without a sidecar from before sidecars, or from a store that died half-way).
    needed = {e["blob"] for e in cache.entries()}
    for blob in (cache.dir / "blobs").glob("*/*.mp4"):
        if blob.name.startswith(".") or blob.stem in needed or sidecar.of_blob(blob):
            continue
        with contextlib.suppress(OSError):
            st = blob.stat()
            if blob.stem not in freed and st.st_mtime >= in_use.horizon:
                continue
            blob.unlink()
            stats["blobs"] += 1
            stats["bytes"] += st.st_size
    for car in (cache.dir / "blobs").glob(f"*/*{sidecar.SUFFIX}"):  # a store that died before its blob
        with contextlib.suppress(OSError):
            if not sidecar.blob_of(car).exists() and car.stat().st_mtime < in_use.horizon:
                car.unlink()

    # 3. Posters and timelines go with their clip's (or film's) entry.
    keys = {e["key"] for e in cache.entries()}
    for made in [*(cache.dir / "posters").glob("*.png"), *(cache.dir / "timelines").glob("*.otio")]:
        key = made.name.split("-")[0]
        if key in keys or key in in_use:
            continue
        with contextlib.suppress(OSError):
            stats["bytes"] += made.stat().st_size
            made.unlink()
    # Media inputs found whole are memos of no entry: they go by age, as the entries do.
    for finding in (cache.dir / checked.FOLDER).glob("*.json"):
        with contextlib.suppress(OSError):
            st = finding.stat()
            if everything or (older_than_s is not None and now - st.st_mtime > older_than_s):
                finding.unlink()
                stats["bytes"] += st.st_size

    # 4. What runs that died left behind.
    stats["bytes"] += live.sweep_leftovers(cache.dir)["bytes"]
    return stats


def _drop(cache: Prunable, entry: dict[str, Any], in_use: _InUse) -> bool:
    """Remove one entry under its lock (not waiting for it: a held lock means it is in use), unless a live run
    uses it. Asked under the lock: a run registers before it looks a key up (under that lock), so a run that
    is not registered yet will find the entry gone, never a blob about to go. False if kept."""
    key = entry["key"]
    with ExitStack() as stack:
        try:
            stack.enter_context(cache.lock(key, timeout=0))
        except Timeout:
            return False
        if key in in_use:
            return False
        with cache._writing:
            cache._index.delete(key)
        blob = cache.dir / "blobs" / str(entry["blob"])[:2] / f"{entry['blob']}.mp4"
        with contextlib.suppress(OSError):
            sidecar.path_of(blob, key).unlink()
        links.forget(cache.dir, key)
    return True
