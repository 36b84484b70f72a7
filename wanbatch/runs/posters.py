"""Poster frames for the pages (the run report, the comparison page): one PNG cut from each clip, or taken
from the cache's `posters/` when the same clip had one cut before, so a rerun cuts none.

Example::

    cut_posters(run_dir, {"001-title": (run_dir / "clips/001-title.mp4", 2.0, cache_key)}, poster_cache)
    # -> {"001-title": "posters/001-title.png"}
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from wanbatch.av.ffmpeg import run_ffmpeg
from wanbatch.av.files import link_or_copy

__all__ = ["POSTER_VERSION", "POSTER_WIDTH", "cut_posters"]

POSTER_WIDTH = 480  # posters are thumbnails: the <video> shows the full frame
POSTER_VERSION = 1  # bump when the way a poster is cut changes: cached posters are then cut again

#: name -> (the video, its duration in seconds if known, its cache key if known)
PosterJobs = Mapping[str, tuple[Path, float | None, Any]]


def cut_posters(out_dir: Path, jobs: PosterJobs, poster_cache: Path | None = None) -> dict[str, str | None]:
    """`out_dir/posters/NAME.png` for every job, cut in parallel (one ffmpeg each). Returns each poster's path
    relative to `out_dir`, or None where no frame could be read."""
    if not jobs:
        return {}
    (out_dir / "posters").mkdir(parents=True, exist_ok=True)

    def cut(name: str) -> tuple[str, str | None]:
        video, duration, key = jobs[name]
        return name, _poster(out_dir, name, video, duration, key, poster_cache)

    with ThreadPoolExecutor(max_workers=min(4, len(jobs))) as pool:
        return dict(pool.map(cut, jobs))


def _poster(
    out_dir: Path, name: str, video: Path, duration: float | None, key: Any, poster_cache: Path | None
) -> str | None:
    """Cut one frame (a third of the way in: past a fade-in, before any fade-out) into posters/NAME.png,
    or link the one cut before from the same clip."""
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
