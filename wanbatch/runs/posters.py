"""Poster frames for the pages (the run report, the comparison page): one PNG cut from each clip (a third of
the way in) into `posters/`, or taken from the cache's `posters/` when the same clip had one cut before, so a
rerun cuts none.

Posters are cut in batches, one ffmpeg for up to `BATCH` clips: an ffmpeg's start-up (~25 ms of CPU, most of
it exec and page faults of a large static binary) costs more than cutting one small frame, so a hundred
posters cut one process each took ~2.5 s of CPU, and in a batch ~0.5 s. A batch that fails (a clip with no
frame where asked) leaves the posters it cut; each missing one is cut on its own, at the start of the clip
if not a third of the way in.

`cut_posters` cuts a page's posters in parallel batches. `EarlyPosters` cuts a run's while it renders: the run
hands it each clip the moment it lands and a worker thread cuts its poster alongside the renders (remote
renders leave the CPU idle), batching the clips that landed while it cut the last ones, so the report,
written after the last clip, finds them done instead of cutting a hundred in a row. Example::

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
import subprocess
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Any

from wanbatch.av.ffmpeg import run_ffmpeg
from wanbatch.av.files import keep_file, link_or_copy
from wanbatch.core.names import file_stem

__all__ = [
    "BATCH",
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
# One thread cuts a run's posters while it renders: the clips that land while it cuts form its next batch. With
# two, batches were half as big and ffmpeg's cost per batch (its start-up, a thread per input) was paid twice as
# often, on the cores the run's own submits and downloads need: on the fake provider (100 jobs x 2 s, 50 in flight,
# 2 cores) one worker takes 0.2-0.4 s less CPU and the run ends ~0.1 s sooner (medians of 10, taking turns).
EARLY_WORKERS = 1
BATCH = 16  # clips one ffmpeg cuts posters from (its inputs are opened at once: a bounded number of files)
SCALE = f"scale='min({POSTER_WIDTH},iw)':-2"

#: name -> (the video, its duration in seconds if known, its cache key if known)
PosterJobs = Mapping[str, tuple[Path, float | None, Any]]


def poster_name(index: int, scene: Mapping[str, Any], take: Any = None) -> str:
    """The poster's name (no suffix) of the `index`th scene of a manifest, or of its take `take`: its number and
    sanitised id (`wanbatch.core.names`), as its clip is named."""
    stem = file_stem(str(scene.get("id") or "scene"), None)
    return f"{index + 1:03d}-{stem}" + (f"-take{int(take)}" if isinstance(take, int) else "")


@dataclass(frozen=True)
class _Cut:
    """One poster to cut: its name, the clip, the clip's duration and cache key when known."""

    name: str
    video: Path
    duration: float | None
    key: Any


class EarlyPosters:
    """Posters cut on worker threads as clips land, for `write_report` (through `cut_posters`) to take."""

    def __init__(self, run_dir: Path, poster_cache: Path | None, workers: int = EARLY_WORKERS):
        self.run_dir, self.poster_cache = run_dir, poster_cache
        self._cuts: dict[str, tuple[Path, Future[str | None]]] = {}
        self._queue: deque[tuple[_Cut, Future[str | None]]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        (run_dir / "posters").mkdir(parents=True, exist_ok=True)
        self._workers = [
            threading.Thread(target=self._work, name=f"wanbatch-poster_{i}", daemon=True) for i in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def add(self, name: str, video: Path, duration: float | None, key: Any) -> None:
        """Queue the poster of a clip that just landed (a later add of the same name replaces it)."""
        with self._cond:
            if self._closed or (name in self._cuts and self._cuts[name][0] == video):
                return
            future: Future[str | None] = Future()
            self._cuts[name] = (video, future)
            self._queue.append((_Cut(name, video, duration, key), future))
            self._cond.notify()

    def has(self, name: str, video: Path) -> bool:
        """Whether the poster of `name` from `video` was queued."""
        with self._cond:
            got = self._cuts.get(name)
        return got is not None and got[0] == video

    def get(self, name: str, video: Path) -> str | EllipsisType | None:
        """The poster cut for `name` from `video` (waiting for it if it is being cut), None when no frame could
        be read, `...` when none was queued for that clip."""
        with self._cond:
            got = self._cuts.get(name)
        if got is None or got[0] != video:
            return ...
        try:
            return got[1].result()
        except BaseException:  # failed, or cancelled by close
            return ...  # the page cuts it again and says what failed

    def close(self) -> None:
        """Stop the workers; posters still queued are not cut (their `get` says so)."""
        with self._cond:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for _cut, future in left:
            future.cancel()
        for worker in self._workers:
            worker.join()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                # every clip that landed while the last batch was cut, up to a batch
                batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            batch = [(cut, future) for cut, future in batch if future.set_running_or_notify_cancel()]
            try:
                done = _cut_batch(self.run_dir, [cut for cut, _ in batch], self.poster_cache)
            except BaseException as exc:  # handed to whoever waits on these posters
                for _cut, future in batch:
                    future.set_exception(exc)
            else:
                for cut, future in batch:
                    future.set_result(done[cut.name])


def cut_posters(
    out_dir: Path, jobs: PosterJobs, poster_cache: Path | None = None, early: EarlyPosters | None = None
) -> dict[str, str | None]:
    """`out_dir/posters/NAME.png` for every job, cut in parallel batches. Returns each poster's path relative
    to `out_dir`, or None where no frame could be read. With `early` (whose run folder is `out_dir`), a poster
    it cut (or is cutting) from the same clip is taken, not cut again."""
    if not jobs:
        return {}
    # Those cut while the run rendered are done, or nearly: cut the others (the film's) meanwhile.
    todo = [_Cut(n, *jobs[n]) for n in jobs if early is None or not early.has(n, jobs[n][0])]
    threads = min(4, max(1, len(todo)))
    size = min(BATCH, max(1, -(-len(todo) // threads)))  # every thread busy, no batch over BATCH
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    posters: dict[str, str | None] = {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        cutting = pool.map(lambda batch: _cut_batch(out_dir, batch, poster_cache), batches)
        if early is not None:
            cut_here = {c.name for c in todo}
            for name in jobs:
                if name not in cut_here:
                    got = early.get(name, jobs[name][0])
                    posters[name] = cut_poster(out_dir, name, *jobs[name], poster_cache) if got is ... else got
        for done in cutting:
            posters.update(done)
    return {name: posters[name] for name in jobs}  # in the jobs' order


def cut_poster(
    out_dir: Path, name: str, video: Path, duration: float | None, key: Any, poster_cache: Path | None
) -> str | None:
    """Cut one frame (a third of the way in: past a fade-in, before any fade-out) into posters/NAME.png,
    or link the one cut before from the same clip. Returns its path relative to out_dir, or None if no
    frame could be read."""
    return _cut_batch(out_dir, [_Cut(name, video, duration, key)], poster_cache)[name]


def _cut_batch(out_dir: Path, cuts: Sequence[_Cut], poster_cache: Path | None) -> dict[str, str | None]:
    """The posters of `cuts`: linked from the poster cache where they were cut before, the others cut by one
    ffmpeg (each on its own where that fails: a clip too short for its seek is cut at its start)."""
    done: dict[str, str | None] = {}
    todo: list[tuple[_Cut, Path, float, Path | None]] = []
    (out_dir / "posters").mkdir(parents=True, exist_ok=True)
    for cut in cuts:
        out = out_dir / _rel(cut)
        at = (cut.duration / 3) if cut.duration else 0.0
        out.unlink(missing_ok=True)  # never show a stale poster from an earlier page
        cached = _cached_poster(poster_cache, cut.key, cut.video, at)
        if cached is not None and cached.is_file():
            link_or_copy(cached, out)
            done[cut.name] = _rel(cut)
        else:
            todo.append((cut, out, at, cached))
    if len(todo) > 1:
        # One decoding thread per clip: a batch cuts one frame from each of many clips; threads would only
        # add start-up. An error (any clip) ends the whole ffmpeg: the posters it wrote stand, the rest are
        # cut below, one at a time.
        inputs = [a for c, _, at, _ in todo for a in ("-threads", "1", "-ss", f"{at:.3f}", "-i", str(c.video))]
        outputs = [
            a
            for i, (_c, out, _a, _k) in enumerate(todo)
            for a in ("-map", f"{i}:v:0", "-frames:v", "1", "-vf", SCALE, "-update", "1", str(out))
        ]
        with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
            run_ffmpeg(["-filter_threads", "1", *inputs, *outputs], timeout=60 + 5 * len(todo))
    for cut, out, at, cached in todo:
        if len(todo) == 1 or not out.is_file():
            _cut_one(cut.video, out, at)
        if out.is_file():
            _keep(out, cached)
            done[cut.name] = _rel(cut)
        else:
            done[cut.name] = None
    return done


def _cut_one(video: Path, out: Path, at: float) -> None:
    for seek in (at, 0.0) if at else (0.0,):
        try:
            run_ffmpeg(
                ["-ss", f"{seek:.3f}", "-i", str(video), "-frames:v", "1", "-vf", SCALE, "-update", "1", str(out)],
                timeout=60,
            )
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            continue
        if out.is_file():
            return


def _keep(out: Path, cached: Path | None) -> None:
    """Put a poster just cut into the poster cache (a poster cache that cannot be written only costs time): a
    hard link of it where the cache is on the same filesystem, as a cached poster is linked into a page's
    folder. Neither is ever written in place (a poster is cut to a file unlinked first), so sharing is safe."""
    if cached is not None:
        keep_file(cached, lambda staged: link_or_copy(out, staged))


def _rel(cut: _Cut) -> str:
    """Where a cut's poster goes, relative to the page's folder (what the page links)."""
    return f"posters/{cut.name}.png"


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
