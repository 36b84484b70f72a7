"""The render cache: a diskcache index over a content-addressed blob store, plus the remote-job journal.

Layout of `cache.dir`::

    index/           diskcache (SQLite): cache key -> entry (blob hash, size, what was hashed, provenance)
    blobs/ab/<sha256>.mp4   video bytes, named by their own hash, written by atomic rename
    journal/         diskcache: cache key -> remote request id and state, written before polling starts; and
                     "render-time:<kind>" -> the last render times observed for that kind of remote job
    locks/<key>.lock one file lock per key: two processes never render the same key at once
    tmp/             scratch folders on the same filesystem, so finished files move in atomically
    posters/<key>-<how>.png  the report's poster of a cached clip (or film), so a rerun cuts none again

A blob is written before its index entry, so a crash can leave an orphan blob (pruned later) but never
an entry that points at nothing. Every fetch verifies the blob's hash; a bad blob is a miss that the
next render repairs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache
from filelock import FileLock

from wanbatch.av.files import sha256_file

_SCENE_PREFIX = "scene-keys:"


@dataclass(frozen=True)
class Hit:
    key: str
    path: Path  # the verified blob
    entry: dict[str, Any]


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def diff_material(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted names of the canonical fields that differ between two key materials."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, "<unset>") != b.get(k, "<unset>"))


def _open(directory: Path) -> diskcache.Cache:
    return diskcache.Cache(str(directory), timeout=60)


class Journal:
    """Remote request ids by cache key. Written before the first poll; removed once the clip is cached."""

    def __init__(self, directory: Path):
        self._db = _open(directory)
        # SQLite takes one writer at a time, and a writer that finds the database busy sleeps in growing steps
        # (up to 100 ms) before it tries again: fifty job threads writing at once lost far more time asleep than
        # writing (a `submitted` record, which precedes the first poll, took up to 0.3 s). Writers of this
        # process queue here instead and go the moment the previous one is done; SQLite's lock still orders
        # them against other processes.
        self._writing = threading.Lock()

    def record(self, key: str, **fields: Any) -> None:
        with self._writing:
            current = self._db.get(key) or {}
            self._db.set(key, {**current, **fields, "updated": time.time()})

    def get(self, key: str) -> dict[str, Any] | None:
        got = self._db.get(key)
        return dict(got) if got is not None else None

    def remove(self, key: str) -> None:
        with self._writing:
            self._db.delete(key)

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for k in list(self._db.iterkeys()):
            if str(k).startswith(_RENDER_TIME):
                continue
            v = self._db.get(k)
            if v is not None:
                yield str(k), dict(v)

    # Render times observed per kind of job (backend, model, size, duration), so a remote backend polls first
    # near when such a job is done instead of at a fixed delay; they outlive the request entries above.
    def observe(self, kind: str, seconds: float) -> None:
        """One more observed render time of `kind`; the last RENDER_TIMES_KEPT are kept."""
        with self._writing:
            seen = list(self._db.get(_RENDER_TIME + kind) or [])
            self._db.set(_RENDER_TIME + kind, [*seen, round(float(seconds), 3)][-RENDER_TIMES_KEPT:])

    def expected(self, kind: str) -> float | None:
        """The median of the render times observed for `kind`, or None before the first."""
        seen = sorted(self._db.get(_RENDER_TIME + kind) or [])
        return float(seen[len(seen) // 2]) if seen else None

    def close(self) -> None:
        self._db.close()


RENDER_TIMES_KEPT = 9
_RENDER_TIME = "render-time:"  # the key prefix of observed render times (request entries are keyed by cache key)


class Cache:
    """Example::

    cache = Cache("~/.cache/wanbatch")
    with cache.lock(key):
        hit = cache.fetch(key) or cache.put(key, rendered_mp4, material=..., meta=...)
    """

    def __init__(self, directory: str | Path):
        self.dir = Path(directory).expanduser().resolve()
        for sub in ("blobs", "locks", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._index = _open(self.dir / "index")
        self._writing = threading.Lock()  # as Journal's: this process's writers queue here, not in SQLite's sleeps
        self.journal = Journal(self.dir / "journal")
        self.repaired: list[str] = []  # keys whose corrupt entries this process dropped

    # -- lookups -----------------------------------------------------------------------------------
    def _blob_path(self, digest: str) -> Path:
        return self.dir / "blobs" / digest[:2] / f"{digest}.mp4"

    def peek(self, key: str) -> dict[str, Any] | None:
        """Cheap plan-time lookup: the entry if its blob exists at the recorded size (no hashing)."""
        entry = self._index.get(key)
        if entry is None:
            return None
        try:
            if self._blob_path(entry["blob"]).stat().st_size != entry["size"]:
                return None
        except OSError:
            return None
        return dict(entry)

    def fetch(self, key: str) -> Hit | None:
        """The entry and its blob, verified byte for byte. A corrupt or missing blob is dropped: a miss."""
        entry = self._index.get(key)
        if entry is None:
            return None
        path = self._blob_path(entry["blob"])
        try:
            ok = path.stat().st_size == entry["size"] and _sha256_uncached(path) == entry["blob"]
        except OSError:
            ok = False
        if not ok:
            with self._writing:
                self._index.delete(key)
            with contextlib.suppress(OSError):
                path.unlink()
            self.repaired.append(key)
            return None
        return Hit(key, path, dict(entry))

    def __contains__(self, key: str) -> bool:
        return self.peek(key) is not None

    # -- writes ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = -1) -> Iterator[None]:
        """Hold the key's lock across processes for the whole check-render-store sequence."""
        with FileLock(str(self.dir / "locks" / f"{key}.lock"), timeout=timeout):
            yield

    @contextlib.contextmanager
    def workdir(self, prefix: str = "job-") -> Iterator[Path]:
        """A scratch folder on the cache's filesystem, removed afterwards whatever happens."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.dir / "tmp"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def put(self, key: str, video: Path, *, material: Mapping[str, Any], meta: Mapping[str, Any]) -> Hit:
        """Copy `video` into the blob store and index it. Atomic: readers see all of it or nothing."""
        digest = _sha256_uncached(video)
        size = video.stat().st_size
        dest = self._blob_path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not (dest.exists() and dest.stat().st_size == size):
            # unique per thread too: two jobs can store identical bytes at the same moment
            staged = dest.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.partial")
            shutil.copyfile(video, staged)
            with open(staged, "rb") as f:
                os.fsync(f.fileno())
            os.replace(staged, dest)
        entry = {
            "key": key,
            "blob": digest,
            "size": size,
            "material": dict(material),
            "created": time.time(),
            **dict(meta),
        }
        scene_id = meta.get("scene_id")
        # One transaction: the entry and the scene's list of recent keys (what `explain_miss` compares with).
        with self._writing, self._index.transact():
            self._index.set(key, entry)
            if scene_id:
                skey = f"{_SCENE_PREFIX}{scene_id}"
                keys = [k for k in (self._index.get(skey) or []) if k != key][-19:]
                self._index.set(skey, [*keys, key])
        return Hit(key, dest, entry)

    # -- explaining, listing, pruning --------------------------------------------------------------
    def explain_miss(self, scene_id: str, material: Mapping[str, Any]) -> str:
        """Why a key missed: the canonical fields that differ from the nearest earlier render of this scene."""
        best: list[str] | None = None
        for k in self._index.get(f"{_SCENE_PREFIX}{scene_id}") or []:
            entry = self._index.get(k)
            if entry is None:
                continue
            diff = diff_material(entry["material"], material)
            if best is None or len(diff) < len(best):
                best = diff
        if best is None:
            return "new: no earlier render of this scene"
        if not best:
            return "blob missing or corrupt: will re-render"
        return "changed: " + ", ".join(best)

    def entries(self) -> Iterator[dict[str, Any]]:
        for k in list(self._index.iterkeys()):
            if isinstance(k, str) and k.startswith(_SCENE_PREFIX):
                continue
            entry = self._index.get(k)
            if entry is not None:
                yield dict(entry)

    def prune(self, *, older_than_s: float | None = None, everything: bool = False) -> dict[str, int]:
        """Drop entries not created within `older_than_s` (or all), then blobs and posters of no entry."""
        now = time.time()
        dropped = 0
        for entry in list(self.entries()):
            if everything or (older_than_s is not None and now - entry["created"] > older_than_s):
                with self._writing:
                    self._index.delete(entry["key"])
                dropped += 1
        remaining = list(self.entries())  # one pass over the index for both sweeps below
        live = {e["blob"] for e in remaining}
        blobs = freed = 0
        for blob in (self.dir / "blobs").glob("*/*"):
            digest = blob.name.split(".")[0].lstrip(".")
            if digest not in live:
                freed += blob.stat().st_size
                blob.unlink()
                blobs += 1
        keys = {e["key"] for e in remaining}
        for poster in (self.dir / "posters").glob("*.png"):  # a poster goes with its clip's entry
            if poster.name.split("-")[0] not in keys:
                freed += poster.stat().st_size
                poster.unlink()
        for tmp in (self.dir / "tmp").iterdir():
            if now - tmp.stat().st_mtime > 24 * 3600:
                shutil.rmtree(tmp, ignore_errors=True)
        return {"entries": dropped, "blobs": blobs, "bytes": freed}

    def close(self) -> None:
        self._index.close()
        self.journal.close()


def _sha256_uncached(path: Path) -> str:
    # Blobs are verified on every read, so the size/mtime memo of media hashing must not be used here.
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


__all__ = ["Cache", "Hit", "Journal", "diff_material", "sha256_file"]
