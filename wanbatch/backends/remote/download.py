"""A finished render's video: downloaded at once (its URL expires), and kept only if it is a whole video.

A download is bounded: one deadline (`timeouts.download_total_s`) over every attempt, checked at every chunk
and enforced by a watchdog that cuts a read stalled on a silent server; a size (`max_download_mb`), checked
against Content-Length and while reading; redirects followed only to https or within the URL's own origin.

What never reaches the cache: an answer other than 200, a body that is not a video type, fewer bytes than
Content-Length, a file ffmpeg cannot open or that has no video stream, an mp4 whose boxes run past
the end of the file (a cut-off mp4 whose index comes first still opens in ffmpeg), and one whose sample
tables point past its end. The download goes to a `.part` file that becomes `clip.mp4` only when every
check has passed. Example::

    video = download(api, run, status.video_url)   # workdir/clip.mp4, or DownloadError / Gone
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from wanbatch.av.mp4 import VIDEO_CODECS, mp4_whole, read_movie
from wanbatch.backends.remote.http import RETRY_STATUS, Api, _Transient, snippet
from wanbatch.backends.remote.probe import PROBES
from wanbatch.backends.remote.run import KEPT, Gone, Run
from wanbatch.errors import Cancelled, DownloadError

BINARY_TYPES = {"application/octet-stream", "binary/octet-stream", "application/mp4"}
MAX_REDIRECTS = 5
WATCH_TICK_S = 0.25  # how soon a second Ctrl-C cuts a download stalled in a read


class _Incomplete(Exception):
    """A download ended before Content-Length bytes arrived."""


def download(api: Api, run: Run, url: str) -> Path:
    """The video at `url` as `clip.mp4` in the job's workdir, checked whole."""
    part = run.ctx.workdir / f"download-{uuid.uuid4().hex}.part"
    limits = _Limits.of(api, run)
    run.ctx.status("downloading")

    def attempt() -> None:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            if time.monotonic() > limits.deadline:
                raise limits.too_slow()
            # No Authorization header: the video lives on a storage host, which must never see the key.
            # Redirects are followed here, one by one, so each target is checked before it is asked.
            try:
                with api.client.stream("GET", current, timeout=limits.timeout(api), follow_redirects=False) as resp:
                    if resp.is_redirect:
                        current = _redirect_target(run, current, resp)
                        continue
                    _check_answer(run, resp, limits)
                    _read_body(run, resp, part, limits)
                    return
            except httpx.TimeoutException:
                if time.monotonic() >= limits.deadline:  # its reads were cut to what was left of the deadline
                    raise limits.too_slow() from None
                raise
        raise DownloadError(
            f"scene `{run.job.id}`: the video URL led through more than {MAX_REDIRECTS} redirects; nothing was cached"
        )

    try:
        api.retrying(run, (httpx.TransportError, _Transient, _Incomplete), paid=True)(attempt)
        check_video(part, run.job.id)
    except (httpx.TransportError, _Transient, _Incomplete) as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"scene `{run.job.id}`: the download failed ({type(exc).__name__}: {exc}); nothing was cached"
        ) from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    video = run.ctx.workdir / "clip.mp4"
    part.replace(video)
    return video


@dataclass(frozen=True)
class _Limits:
    """One download's bounds: a deadline over every attempt and redirect, and a size."""

    deadline: float  # time.monotonic()
    total_s: float
    max_bytes: int
    where: str  # `scene `x``
    option: str  # `backends.<name>`

    @classmethod
    def of(cls, api: Api, run: Run) -> _Limits:
        total_s = api.settings.timeouts.download_total_s
        return cls(
            deadline=time.monotonic() + total_s,
            total_s=total_s,
            max_bytes=int(api.settings.max_download_mb * 2**20),
            where=f"scene `{run.job.id}`",
            option=f"backends.{run.job.backend}",
        )

    def timeout(self, api: Api) -> httpx.Timeout:
        """The download's timeouts, none reaching past the deadline (a server slow to answer at all)."""
        t = api.timeout(download=True)
        left = max(0.001, self.deadline - time.monotonic())
        return httpx.Timeout(
            connect=_at_most(t.connect, left), read=_at_most(t.read, left), write=t.write, pool=_at_most(t.pool, left)
        )

    def too_slow(self) -> DownloadError:
        return DownloadError(
            f"{self.where}: the download took longer than {self.total_s:g}s "
            f"(`{self.option}.timeouts.download_total_s`); nothing was cached; {KEPT}"
        )

    def too_big(self, size: str) -> DownloadError:
        return DownloadError(
            f"{self.where}: the video is {size} MB, more than `{self.option}.max_download_mb` = "
            f"{self.max_bytes / 2**20:g}; nothing was cached; {KEPT}"
        )


def _at_most(value: float | None, cap: float) -> float:
    return cap if value is None else min(value, cap)


def redirect_allowed(source: str, target: str) -> bool:
    """A video URL may redirect to https anywhere (a CDN), or within its own origin; never to another origin
    over plain http (anyone on the path could swap the video) nor to another scheme (file://)."""
    a, b = httpx.URL(source), httpx.URL(target)
    if b.scheme == "https":
        return True
    return b.scheme == "http" and (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _redirect_target(run: Run, current: str, resp: httpx.Response) -> str:
    location = resp.headers.get("location", "")
    try:
        target = str(resp.url.join(location))
    except httpx.InvalidURL:
        target = location
    if not target or not redirect_allowed(current, target):
        raise DownloadError(
            f"scene `{run.job.id}`: the video URL redirected to {snippet(location, 200)}; wanbatch follows a "
            "video URL only to https or the same origin; nothing was cached"
        )
    return target


def _check_answer(run: Run, resp: httpx.Response, limits: _Limits) -> None:
    """What the headers say, before a byte of the body is read: status, type and announced size."""
    if resp.status_code in (403, 410):
        said = snippet(resp.read().decode("utf-8", "replace"), 120)
        raise Gone(f"the video URL answered HTTP {resp.status_code}: expired ({said})")
    if resp.status_code in RETRY_STATUS:
        raise _Transient(resp)
    if resp.status_code != 200:
        raise DownloadError(
            f"scene `{run.job.id}`: the video URL answered HTTP {resp.status_code}, not 200; nothing was cached"
        )
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and not (ctype.startswith("video/") or ctype in BINARY_TYPES):
        raise DownloadError(f"scene `{run.job.id}`: the video URL sent `{ctype}`, not a video; nothing was cached")
    announced = _content_length(resp)
    if announced is not None and announced > limits.max_bytes:
        raise limits.too_big(f"{announced / 2**20:.4g}")


def _read_body(run: Run, resp: httpx.Response, part: Path, limits: _Limits) -> None:
    """The body into `part`, as its bytes arrive: the deadline, the size cap and a second Ctrl-C are checked
    at every chunk, and the watchdog cuts a read that waits on a server sending nothing."""
    abandon = run.ctx.abandon
    got = 0
    with _Watchdog(resp, limits.deadline, abandon) as dog, open(part, "wb") as f:
        try:
            for chunk in resp.iter_bytes():  # no chunk size: a chunk is what the network gave, never waited for
                # Not on a first Ctrl-C (`cancel`): this render is paid for, and its URL may expire.
                if abandon.is_set():
                    raise Cancelled(f"scene `{run.job.id}`: its download was abandoned; {KEPT}")
                if time.monotonic() > limits.deadline:
                    raise limits.too_slow()
                got += len(chunk)
                if got > limits.max_bytes:
                    raise limits.too_big(f"more than {limits.max_bytes / 2**20:g}")
                f.write(chunk)
        except httpx.TransportError:
            dog.raise_if_fired(run, limits)  # the watchdog cut the connection: say why
            raise
        dog.raise_if_fired(run, limits)  # a body without Content-Length simply ends when its socket is cut
    announced = _content_length(resp)
    if announced is not None and resp.num_bytes_downloaded != announced:
        raise _Incomplete(f"{resp.num_bytes_downloaded} of {announced} bytes")


def _content_length(resp: httpx.Response) -> int | None:
    try:
        return int(resp.headers["content-length"])
    except (KeyError, ValueError):
        return None


class _Watchdog:
    """Shuts a download's socket when its deadline passes or a second Ctrl-C comes, so a read blocked on a
    server that sends nothing returns at once rather than after its read timeout (minutes). A transport
    without a socket (an injected test transport) is left to the per-chunk checks."""

    def __init__(self, resp: httpx.Response, deadline: float, abandon: threading.Event):
        stream = resp.extensions.get("network_stream")
        self._sock: socket.socket | None = stream.get_extra_info("socket") if stream is not None else None
        self._deadline, self._abandon = deadline, abandon
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired: str | None = None  # "abandon" | "deadline"

    def __enter__(self) -> _Watchdog:
        if self._sock is not None:
            self._thread = threading.Thread(target=self._watch, name="wanbatch-download-watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        assert self._sock is not None
        # The abandon event has no callback, so it is looked at every tick; the deadline is waited for exactly.
        while not self._done.wait(min(WATCH_TICK_S, max(0.0, self._deadline - time.monotonic()))):
            if self._abandon.is_set():
                self.fired = "abandon"
            elif time.monotonic() >= self._deadline:
                self.fired = "deadline"
            else:
                continue
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            return

    def raise_if_fired(self, run: Run, limits: _Limits) -> None:
        if self.fired == "abandon":
            raise Cancelled(f"scene `{run.job.id}`: its download was abandoned; {KEPT}")
        if self.fired == "deadline":
            raise limits.too_slow()


def check_video(path: Path, scene_id: str) -> None:
    """A whole video ffmpeg can open, or DownloadError."""
    # The box walk first: it reads a few headers, and tells a cut-off mp4 without starting ffmpeg.
    if not mp4_whole(path):
        raise DownloadError(
            f"scene `{scene_id}`: the download is cut short (its mp4 boxes run past the end "
            "of the file); nothing was cached"
        )
    # An mp4 whose header this module reads in full (a video track in a codec ffmpeg decodes, with frames,
    # a size and a duration, every sample inside the file) is what ffmpeg would open; reading it here
    # costs ~0.3 ms where starting ffmpeg costs ~15 ms of CPU, which fifty downloads finishing together
    # take from the next fifty submits. Anything else (other containers, fragmented or odd mp4s) goes to ffmpeg.
    movie = read_movie(path)
    video = movie.video if movie is not None else None
    if video is not None and video.codec in VIDEO_CODECS and video.frames and video.width and video.duration > 0:
        if video.data_end > path.stat().st_size:
            raise DownloadError(
                f"scene `{scene_id}`: the download is broken (its video samples are listed past the end "
                "of the file); nothing was cached"
            )
        return
    try:
        opened = PROBES.open(path)
    except (ValueError, OSError) as exc:
        raise DownloadError(
            f"scene `{scene_id}`: the download is not a video ffmpeg can open ({exc}); nothing was cached"
        ) from None
    if not opened.has_video or not opened.duration:
        raise DownloadError(f"scene `{scene_id}`: the download has no video stream; nothing was cached")


__all__ = ["BINARY_TYPES", "check_video", "download", "mp4_whole", "redirect_allowed"]
