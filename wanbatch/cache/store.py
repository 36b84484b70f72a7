"""The render cache: a diskcache index over a content-addressed blob store, plus the remote-job journal.

Layout of `cache.dir`::

    index/           diskcache (SQLite): cache key -> entry (blob hash, size, what was hashed, provenance)
    blobs/ab/<sha256>.mp4         video bytes, named by their own hash, written by atomic rename
    blobs/ab/<sha256>.<key>.json  the blob's sidecar: its entry, so the index can be rebuilt (sidecar.py)
    journal/         diskcache: cache key -> remote request id and state, written before polling starts; and
                     "render-time:<kind>" -> the last render times observed for that kind of remote job
    locks/<key>.lock one file lock per key: two processes never render the same key at once
    runs/            the runs alive on this cache and the keys they use (live.py): prune keeps those
    links/<key>.txt  the run folders' copies of a clip, repaired with its blob (links.py)
    tmp/             scratch folders on the same filesystem, so finished files move in atomically
    posters/<key>-<how>.png  the report's poster of a cached clip (or film), so a rerun cuts none again
    timelines/<key>-<how>.otio  the OTIO text of a cached film's cut (film.timeline), so a rerun makes none again
    checked/<name>.json      a media input found whole, by its file's identity (checked.py): not decoded again

A blob is written before its index entry, so a crash can leave an orphan blob (pruned later) but never
an entry that points at nothing. Every fetch verifies the blob's hash; a bad blob is a miss that the
next render repairs. A missing or malformed index is rebuilt from the sidecars when the cache is opened.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from wanbatch.av.files import link_or_copy, sha256_file, sha256_fresh
from wanbatch.cache import index, links, live, prune, sidecar
from wanbatch.cache.group import GroupWriter
from wanbatch.errors import ReadOnlyCacheError
from wanbatch.secrets import redact_data


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


def describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Each differing field as `name old → new` (long values shortened), what `cache why` prints."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k} {_short(a.get(k, '<unset>'))} → {_short(b.get(k, '<unset>'))}" for k in diff_material(old, new)]


def _short(value: Any, width: int = 40) -> str:
    text = repr(value) if isinstance(value, str) and value != "<unset>" else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def is_cache(directory: str | Path) -> bool:
    """Whether a render cache exists at `directory` (opening a `Cache` creates one; a look into it must not)."""
    d = Path(directory).expanduser()
    return (d / "index").is_dir() or (d / "blobs").is_dir()


class Journal:
    """Remote request ids by cache key. Written before the first poll; removed once the clip is cached."""

    def __init__(self, directory: Path):
        self._db = index.open_db(directory)
        # Fifty job threads write here at once: their writes are committed together (see cache.group), which
        # also keeps them out of SQLite's busy sleeps (growing steps up to 100 ms) within this process; SQLite's
        # lock still orders them against other processes.
        self._writes = GroupWriter(self._db)

    def record(self, key: str, **fields: Any) -> None:
        update = {**redact_data(fields), "updated": time.time()}

        def merge(db: Any) -> None:
            db.set(key, {**(db.get(key) or {}), **update})

        self._writes.apply(merge)

    def get(self, key: str) -> dict[str, Any] | None:
        got = self._db.get(key)
        return dict(got) if got is not None else None

    def remove(self, key: str) -> None:
        self._writes.apply(lambda db: db.delete(key))

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
        took = round(float(seconds), 3)

        def append(db: Any) -> None:
            seen = list(db.get(_RENDER_TIME + kind) or [])
            db.set(_RENDER_TIME + kind, [*seen, took][-RENDER_TIMES_KEPT:])

        self._writes.apply(append)

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

    A cache this process may not write is opened read-only (`readonly=True` asks for that): lookups, hits
    and dry runs work and nothing is written; `put`, `prune` and a journal raise `ReadOnlyCacheError`.
    """

    def __init__(self, directory: str | Path, *, readonly: bool | None = None):
        self.dir = Path(directory).expanduser().resolve()
        self.project: str | None = None  # recorded in each entry this Cache puts (`wanbatch cache list --project`)
        self.notes: list[str] = []  # what opening found and did (a rebuilt index), for the user to read
        self.repaired: list[str] = []  # keys whose corrupt entries this process dropped
        self.corrupt: list[str] = []  # keys whose blobs a read-only look found corrupt (and left alone)
        self.readonly = bool(readonly) if readonly is not None else not _writable(self.dir)
        self._index: Any
        if self.readonly:
            self._index = index.open_readonly(self.dir, self.notes)
        else:
            for sub in ("blobs", "locks", "tmp"):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
            self._index = index.open_checked(self.dir, self.notes)
        # as Journal's: this process's writes are committed together; `with self._writing:` writes alone (a
        # read-only cache writes nothing)
        self._writing = GroupWriter(self._index)
        if not self.readonly:
            self._backfill_sidecars()

    def _backfill_sidecars(self) -> None:
        """Once per cache: a sidecar for every entry made before sidecars existed, so it can be rebuilt too."""
        marker = self.dir / "blobs" / sidecar.BACKFILLED
        if marker.exists():
            return
        for entry in self.entries():
            blob = self._blob_path(entry["blob"])
            if blob.exists() and not sidecar.path_of(blob, entry["key"]).exists():
                sidecar.write(blob, entry)
        marker.touch()

    @functools.cached_property
    def journal(self) -> Journal:
        """The remote request journal, opened on first use (a run without remote scenes never opens it)."""
        self._require_writable("journal remote requests")
        return Journal(self.dir / "journal")

    def journal_entry(self, key: str) -> dict[str, Any] | None:
        """A remote job's journal record, read without writing anything (a read-only cache has no `journal`):
        what a dry run's estimate needs to know that a job was accepted already."""
        if not self.readonly:
            return self.journal.get(key)
        if self._journal_readonly is None:
            return None
        got = self._journal_readonly.get(key)
        return dict(got) if got is not None else None

    @functools.cached_property
    def _journal_readonly(self) -> index.ReadOnlyIndex | None:
        folder = self.dir / "journal"
        return index.ReadOnlyIndex(folder) if (folder / index.DB_FILE).is_file() else None

    def _require_writable(self, what: str) -> None:
        if self.readonly:
            raise ReadOnlyCacheError(f"cannot {what}: the cache {self.dir} is read-only here")

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

    def verify(self, key: str) -> tuple[str, dict[str, Any] | None]:
        """Look up `key` and check its blob byte for byte, changing nothing: ("cached", entry), ("corrupt",
        entry) (missing, cut short or other bytes: a run renders it again) or ("absent", None)."""
        entry = self._index.get(key)
        if entry is None:
            return "absent", None
        path = self._blob_path(entry["blob"])
        try:
            ok = path.stat().st_size == entry["size"] and sha256_fresh(path) == entry["blob"]
        except OSError:
            ok = False
        return ("cached" if ok else "corrupt"), dict(entry)

    def fetch(self, key: str) -> Hit | None:
        """The entry and its blob, verified byte for byte. A corrupt or missing blob is dropped: a miss."""
        state, entry = self.verify(key)
        if entry is None:
            return None
        path = self._blob_path(entry["blob"])
        if state == "corrupt":
            if self.readonly:
                self.corrupt.append(key)
                return None
            with self._writing:
                self._index.delete(key)
            with contextlib.suppress(OSError):
                sidecar.path_of(path, key).unlink()
            with contextlib.suppress(OSError):
                path.unlink()
            self.repaired.append(key)
            return None
        return Hit(key, path, entry)

    def __contains__(self, key: str) -> bool:
        return self.peek(key) is not None

    # -- writes ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = -1) -> Iterator[None]:
        """Hold the key's lock across processes for the whole check-render-store sequence. (A read-only cache
        has no locks: nothing is stored in it, so there is nothing to keep apart.)"""
        if self.readonly:
            yield
            return
        with FileLock(str(self.dir / "locks" / f"{key}.lock"), timeout=timeout):
            yield

    @contextlib.contextmanager
    def workdir(self, prefix: str = "job-") -> Iterator[Path]:
        """A scratch folder on the cache's filesystem (the system's for a read-only cache), removed afterwards
        whatever happens; one a killed run leaves is swept by a later run (`live.sweep_leftovers`)."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=None if self.readonly else self.dir / "tmp"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def put(
        self, key: str, video: Path, *, material: Mapping[str, Any], meta: Mapping[str, Any], take: bool = False
    ) -> Hit:
        """Put `video` into the blob store (a copy of it; with `take`, the file itself) and index it. Atomic:
        readers see all of it or nothing.

        `take`: `video` is this process's own file that nothing writes again (a render in its job's workdir, a
        film just joined): where it is on the cache's filesystem, the blob is that file, hard-linked into the
        store, not a copy. A render's bytes are not written a second time (a film's can be gigabytes), and no
        file is made only for the workdir's to be deleted.

        Order: the sidecar, then the blob (renamed into place), then the index entry. A crash in between
        leaves a blob with its sidecar (the index is rebuilt from it) or a sidecar without a blob (dropped),
        never an entry that points at nothing. Copies of an earlier, corrupt blob of this key in run folders
        are replaced (`links.relink`)."""
        self._require_writable("store a render")
        digest = sha256_fresh(video)
        size = video.stat().st_size
        dest = self._blob_path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "key": key,
            "blob": digest,
            "size": size,
            "material": redact_data(dict(material)),
            "created": time.time(),
            **({"project": self.project} if self.project else {}),
            **redact_data(dict(meta)),
        }
        car = sidecar.write(dest, entry)
        try:
            self._store_blob(video, dest, digest, size, take)
        except BaseException:
            if not dest.exists():
                car.unlink(missing_ok=True)
            raise
        scene_id = meta.get("scene_id")

        # One transaction: the entry and the scene's list of recent keys (what `explain_miss` compares with).
        def index_it(db: Any) -> None:
            db.set(key, entry)
            if scene_id:
                skey = f"{index.SCENE_PREFIX}{scene_id}"
                keys = [k for k in (db.get(skey) or []) if k != key][-(index.RECENT_KEYS - 1) :]
                db.set(skey, [*keys, key])

        self._writing.apply(index_it)
        links.relink(self.dir, key, dest, digest)
        return Hit(key, dest, entry)

    def _store_blob(self, video: Path, dest: Path, digest: str, size: int, take: bool) -> None:
        with contextlib.suppress(OSError):
            if dest.stat().st_size == size and sha256_fresh(dest) == digest:
                os.utime(dest)  # in use again now: a prune that looks at ages keeps it
                return
        # unique per thread too: two jobs can store identical bytes at the same moment
        staged = dest.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            # Only a file with no other name: one that another path reaches (a link to a user's file) could be
            # written through that path, and a blob must never change.
            if take and video.stat().st_nlink == 1:
                link_or_copy(video, staged)  # a copy only across filesystems
            else:
                shutil.copyfile(video, staged)
            with open(staged, "rb") as f:
                os.fsync(f.fileno())
            os.replace(staged, dest)
        except BaseException:  # e.g. the disk is full: leave no partial blob behind
            staged.unlink(missing_ok=True)
            raise

    def record_link(self, key: str, digest: str, path: Path) -> None:
        """`path` (a run folder's clip) holds the blob of `key`: repaired with it if that blob goes bad."""
        if not self.readonly:
            links.record(self.dir, key, digest, path)

    # -- runs --------------------------------------------------------------------------------------
    def register(self, keys: Iterable[str]) -> live.Registration:
        """Register a run using `keys` for as long as it lives: `prune` keeps them (see `live.py`)."""
        self._require_writable("register a run")
        return live.Registration(self.dir, keys)

    def sweep_leftovers(self) -> dict[str, int]:
        """Remove scratch folders and partial blobs older than every live run (left by runs that died)."""
        return {"tmp": 0, "partial": 0, "bytes": 0} if self.readonly else live.sweep_leftovers(self.dir)

    # -- explaining, listing, pruning --------------------------------------------------------------
    def explain_miss(self, scene_id: str, material: Mapping[str, Any]) -> str:
        """Why a key missed: the canonical fields that differ from the nearest earlier render of this scene."""
        best: list[str] | None = None
        for k in self._index.get(f"{index.SCENE_PREFIX}{scene_id}") or []:
            entry = self._index.get(k)
            if entry is None:
                continue
            diff = describe_change(entry["material"], material)
            if best is None or len(diff) < len(best):
                best = diff
        if best is None:
            return "new: no earlier render of this scene"
        if not best:
            return "blob missing or corrupt: will re-render"
        return "changed: " + ", ".join(best)

    def entries(self) -> Iterator[dict[str, Any]]:
        for k in list(self._index.iterkeys()):
            if isinstance(k, str) and k.startswith(index.SCENE_PREFIX):
                continue
            entry = self._index.get(k)
            if entry is not None:
                yield dict(entry)

    def prune(self, *, older_than_s: float | None = None, everything: bool = False) -> dict[str, int]:
        """Drop entries not created within `older_than_s` (or all), then blobs and posters of no entry, then
        leftovers of runs that died. Safe while runs go on: an entry a live run uses (see `live.py`) or whose
        lock is held (being rendered, stored or read) is kept, and so is its blob."""
        self._require_writable("prune")
        return prune.prune(self, older_than_s=older_than_s, everything=everything)

    def close(self) -> None:
        self._index.close()
        if "journal" in self.__dict__:
            self.journal.close()
        journal_readonly = self.__dict__.get("_journal_readonly")
        if journal_readonly is not None:
            journal_readonly.close()


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK | os.X_OK)


__all__ = [
    "Cache",
    "Hit",
    "Journal",
    "ReadOnlyCacheError",
    "describe_change",
    "diff_material",
    "is_cache",
    "sha256_file",
]
