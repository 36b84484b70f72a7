"""Whether ffmpeg can open a downloaded video and finds a video stream in it, for many downloads at once.
(Most downloads never come here: an mp4 whose header wanbatch reads in full is checked in Python by
`remote_download.check_video`; these are the rest.)

Starting ffmpeg (a 170 MB binary) is nearly all that a probe costs: ~15 ms of CPU, where reading one small
file's header takes ~1 ms. Remote jobs finish in waves (fifty submitted together come back together),
and fifty ffmpeg starts on a small machine take the CPU the next fifty submits need. So probes that
arrive together share one `ffmpeg -i a.mp4 -i b.mp4 ...`, which prints each input's streams as a probe
of that file alone would.

The batch is only a fast path for healthy files: a file its section does not clearly show as a video
with a duration (and every file of a batch ffmpeg could not finish) is probed alone, by `ffmpeg.probe`,
so whatever is wrong with it is told exactly as before. A lone probe runs at once, as before. Example::

    opened = PROBES.open(Path("clip.mp4"))    # ValueError when ffmpeg cannot read it
    opened.has_video, opened.duration         # (True, 5.0)
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from wanbatch.av.ffmpeg import ffmpeg_exe, parse_probe, probe

_INPUT = re.compile(r"^Input #(\d+), ", re.MULTILINE)


@dataclass(frozen=True)
class Opened:
    has_video: bool
    duration: float | None  # seconds; None where ffmpeg shows none


class _Request:
    def __init__(self, path: Path):
        self.path = path
        self.done = False
        self.result: Opened | None = None
        self.error: BaseException | None = None


class Prober:
    """Probes gathered into shared ffmpeg runs: a probe that arrives while `runners` runs are under way
    waits for one to end, then goes in the next run with every probe that waited (up to `most`)."""

    def __init__(self, runners: int = 2, most: int = 32, timeout: float = 60.0):
        self.runners, self.most, self.timeout = runners, most, timeout
        self._cond = threading.Condition()
        self._waiting: list[_Request] = []
        self._running = 0
        self.runs = 0  # ffmpeg runs so far (for tests and benchmarks)

    def open(self, path: Path) -> Opened:
        """What ffmpeg makes of `path`. Raises ValueError (as `ffmpeg.probe`) when it cannot read it."""
        request = _Request(path)
        with self._cond:
            self._waiting.append(request)
            while True:
                if request.done:
                    break
                if self._running < self.runners and request in self._waiting:
                    # This thread runs the next batch: the oldest waiting probes, its own among them
                    # (unless `most` are older: then it runs theirs, and goes on waiting for its own).
                    batch, self._waiting = self._waiting[: self.most], self._waiting[self.most :]
                    self._running += 1
                    self._cond.release()
                    try:
                        self._run(batch)
                    finally:
                        self._cond.acquire()
                        self._running -= 1
                        self._cond.notify_all()
                else:
                    self._cond.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _run(self, batch: list[_Request]) -> None:
        try:
            alone = batch
            if len(batch) > 1:
                self._count()
                alone = []
                sections = self._sections([r.path for r in batch])
                for i, request in enumerate(batch):
                    opened = _healthy(sections.get(i, ""))
                    if opened is None:
                        alone.append(request)
                    else:
                        request.result, request.done = opened, True
            for request in alone:
                self._count()
                try:
                    p = probe(request.path, timeout=self.timeout)
                    request.result = Opened(p.has_video, p.duration)
                except Exception as exc:  # handed to the thread that asked
                    request.error = exc
                request.done = True
        except BaseException as exc:  # e.g. KeyboardInterrupt: no thread may wait forever for its answer
            for request in batch:
                if not request.done:
                    request.error, request.done = exc, True
            raise

    def _count(self) -> None:
        with self._cond:
            self.runs += 1

    def _sections(self, paths: list[Path]) -> dict[int, str]:
        """ffmpeg's summary of each input, by index; none for inputs after one it could not open."""
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin"]
        for path in paths:
            args += ["-i", str(path)]
        try:
            # Its own session: a Ctrl-C in the terminal must not kill the check of a paid download (run_ffmpeg).
            err = subprocess.run(
                args, capture_output=True, text=True, timeout=self.timeout, start_new_session=True
            ).stderr
        except (OSError, subprocess.SubprocessError):
            return {}  # every file is probed alone, and fails there as it would have
        heads = list(_INPUT.finditer(err))
        return {
            int(m.group(1)): err[m.start() : heads[n + 1].start() if n + 1 < len(heads) else len(err)]
            for n, m in enumerate(heads)
        }


def _healthy(section: str) -> Opened | None:
    """The input's video and duration, where its section clearly shows both; else None (probe it alone).
    Read by `ffmpeg.parse_probe`, as a lone probe reads it, so a file passes here exactly when it would there."""
    try:
        p = parse_probe(section)
    except ValueError:
        return None
    return Opened(True, p.duration) if p.has_video and p.duration else None


# One for the process: jobs of every backend finish into the same waves.
PROBES = Prober(runners=max(1, min(4, os.cpu_count() or 1)))

__all__ = ["PROBES", "Opened", "Prober"]
