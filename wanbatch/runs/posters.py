"""Poster frames for the pages (the run report, the comparison page): one PNG cut from each clip (a third of
the way in) into `posters/`, or taken from the cache's `posters/` when the same clip had one cut before, so a
rerun cuts none.

`cut_posters` cuts a page's posters in parallel. `EarlyPosters` cuts a run's while it renders: the run hands it
each clip the moment it lands and a worker thread cuts its poster alongside the renders (remote renders leave
the CPU idle; an ffmpeg cut is ~50 ms), so the report, written after the last clip, finds them done instead of
cutting a hundred in a row. Example::

    cut_posters(run_dir, {"001-title": (run_dir / "clips/001-title.mp4", 2.0, cache_key)}, poster_cache)
    # -> {"001-title": "posters/001-title.png"}

    early = EarlyPosters(run_dir, poster_cache)
    early.add(poster_name(0, record), run_dir / "clips/001-a.mp4", 2.0, record["cache_key"])   # as clips land
    write_report(run_dir, manifest, poster_cache=poster_cache, early=early)                    # takes them
    early.close()
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import EllipsisType
from typing import Any

from wanbatch.av.ffmpeg import run_ffmpeg
from wanbatch.av.files import link_or_copy
from wanbatch.core.names import file_stem

__all__ = [
    "EARLY_WORKERS",
    "POSTER_VERSION",
    "POSTER_WIDTH",
    "EarlyPosters",
    "PosterJobs",
    "cut_poster",
    "cut_posters",
    "poster_name",
]

POSTER_WIDTH = 480  # posters are thumbnails: the <video> shows the full frame
POSTER_VERSION = 1  # bump when the way a poster is cut changes: cached posters are then cut again
EARLY_WORKERS = 2  # threads cutting posters during a run: each mostly waits on its ffmpeg

#: name -> (the video, its duration in seconds if known, its cache key if known)
PosterJobs = Mapping[str, tuple[Path, float | None, Any]]


def poster_name(index: int, scene: Mapping[str, Any], take: Any = None) -> str:
    """The poster's name (no suffix) of the `index`th scene of a manifest, or of its take `take`: its number and
    sanitised id (`wanbatch.core.names`), as its clip is named."""
    stem = file_stem(str(scene.get("id") or "scene"), None)
    return f"{index + 1:03d}-{stem}" + (f"-take{int(take)}" if isinstance(take, int) else "")


class EarlyPosters:
    """Posters cut on worker threads as clips land, for `write_report` (through `cut_posters`) to take."""

    def __init__(self, run_dir: Path, poster_cache: Path | None, workers: int = EARLY_WORKERS):
        self.run_dir, self.poster_cache = run_dir, poster_cache
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wanbatch-poster")
        self._cuts: dict[str, tuple[Path, Future[str | None]]] = {}
        self._lock = threading.Lock()
        (run_dir / "posters").mkdir(parents=True, exist_ok=True)

    def add(self, name: str, video: Path, duration: float | None, key: Any) -> None:
        """Queue the poster of a clip that just landed (a later add of the same name replaces it)."""
        with self._lock:
            if name in self._cuts and self._cuts[name][0] == video:
                return
            future = self._pool.submit(cut_poster, self.run_dir, name, video, duration, key, self.poster_cache)
            self._cuts[name] = (video, future)

    def has(self, name: str, video: Path) -> bool:
        """Whether the poster of `name` from `video` was queued."""
        with self._lock:
            got = self._cuts.get(name)
        return got is not None and got[0] == video

    def get(self, name: str, video: Path) -> str | EllipsisType | None:
        """The poster cut for `name` from `video` (waiting for it if it is being cut), None when no frame could
        be read, `...` when none was queued for that clip."""
        with self._lock:
            got = self._cuts.get(name)
        if got is None or got[0] != video:
            return ...
        try:
            return got[1].result()
        except Exception:
            return ...  # the page cuts it again and says what failed

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def cut_posters(
    out_dir: Path, jobs: PosterJobs, poster_cache: Path | None = None, early: EarlyPosters | None = None
) -> dict[str, str | None]:
    """`out_dir/posters/NAME.png` for every job, cut in parallel (one ffmpeg each). Returns each poster's path
    relative to `out_dir`, or None where no frame could be read. With `early` (whose run folder is `out_dir`),
    a poster it cut (or is cutting) from the same clip is taken, not cut again."""
    if not jobs:
        return {}
    (out_dir / "posters").mkdir(parents=True, exist_ok=True)

    def cut(name: str) -> tuple[str, str | None]:
        video, duration, key = jobs[name]
        return name, cut_poster(out_dir, name, video, duration, key, poster_cache)

    # Those cut while the run rendered are done, or nearly: cut the others (the film's) meanwhile.
    todo = [n for n in jobs if early is None or not early.has(n, jobs[n][0])]
    posters: dict[str, str | None] = {}
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(todo)))) as pool:
        cutting = pool.map(cut, todo)
        if early is not None:
            for name in jobs:
                if name not in todo:
                    got = early.get(name, jobs[name][0])
                    posters[name] = cut(name)[1] if got is ... else got
        posters.update(cutting)
    return {name: posters[name] for name in jobs}  # in the jobs' order


def cut_poster(
    out_dir: Path, name: str, video: Path, duration: float | None, key: Any, poster_cache: Path | None
) -> str | None:
    """Cut one frame (a third of the way in: past a fade-in, before any fade-out) into posters/NAME.png,
    or link the one cut before from the same clip. Returns its path relative to out_dir, or None if no
    frame could be read."""
    rel = f"posters/{name}.png"
    out = out_dir / rel
    at = (duration / 3) if duration else 0.0
    out.unlink(missing_ok=True)  # never show a stale poster from an earlier page
    cached = _cached_poster(poster_cache, key, video, at)
    if cached is not None and cached.is_file():
        link_or_copy(cached, out)
        return rel
    scale = f"scale='min({POSTER_WIDTH},iw)':-2"
    for seek in (at, 0.0) if at else (0.0,):
        try:
            run_ffmpeg(
                ["-ss", f"{seek:.3f}", "-i", str(video), "-frames:v", "1", "-vf", scale, "-update", "1", str(out)],
                timeout=60,
            )
        except (RuntimeError, OSError):
            continue
        if out.is_file():
            if cached is not None:
                with contextlib.suppress(OSError):  # a poster cache that cannot be written only costs time
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    staged = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}")
                    shutil.copyfile(out, staged)
                    os.replace(staged, cached)
            return rel
    return None


def _cached_poster(poster_cache: Path | None, key: Any, video: Path, at: float) -> Path | None:
    """Where the cache keeps this clip's poster: named by the clip's cache key (so `cache prune` can tell
    whose it is) and by what else makes the picture: the file itself as it is now (size and modification
    time: a re-render or an edit in place is another file) and where and how the frame is cut."""
    if poster_cache is None or not isinstance(key, str) or not key.isalnum():
        return None
    try:
        st = video.stat()
    except OSError:
        return None
    how = hashlib.sha256(f"{st.st_size}|{st.st_mtime_ns}|{at:.3f}|{POSTER_WIDTH}|{POSTER_VERSION}".encode())
    return poster_cache / f"{key}-{how.hexdigest()[:16]}.png"
