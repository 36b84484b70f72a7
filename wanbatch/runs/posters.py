"""Posters for the report: a frame cut from each clip (a third of the way in) into `posters/`, or linked from
the cache's `posters/` when the same clip had one cut before.

`EarlyPosters` cuts them while the run renders: the run hands it each clip the moment it lands and a worker
thread cuts its poster alongside the renders (remote renders leave the CPU idle; an ffmpeg cut is ~50 ms),
so the report, written after the last clip, finds them done instead of cutting a hundred in a row. Example::

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
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import EllipsisType
from typing import Any

from wanbatch.av.ffmpeg import run_ffmpeg
from wanbatch.av.files import link_or_copy
from wanbatch.runs.manifest import SceneRecord

POSTER_WIDTH = 480  # posters are thumbnails: the <video> shows the full frame
POSTER_VERSION = 1  # bump when the way a poster is cut changes: cached posters are then cut again
EARLY_WORKERS = 2  # threads cutting posters during a run: each mostly waits on its ffmpeg


class EarlyPosters:
    """Posters cut on worker threads as clips land, for `write_report` to take."""

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
            return ...  # the report cuts it again and says what failed

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def poster_name(index: int, scene: SceneRecord) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(scene.get("id") or "scene"))
    return f"{index + 1:03d}-{safe}"


def cut_poster(
    run_dir: Path, name: str, video: Path, duration: float | None, key: Any, poster_cache: Path | None
) -> str | None:
    """Cut one frame (a third of the way in: past a fade-in, before any fade-out) into posters/NAME.png,
    or link the one cut before from the same clip. Returns its path relative to run_dir, or None if no
    frame could be read."""
    rel = f"posters/{name}.png"
    out = run_dir / rel
    at = (duration / 3) if duration else 0.0
    out.unlink(missing_ok=True)  # never show a stale poster from an earlier report
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


# -- the page ---------------------------------------------------------------------------------------------


__all__ = ["EARLY_WORKERS", "POSTER_VERSION", "POSTER_WIDTH", "EarlyPosters", "cut_poster", "poster_name"]
