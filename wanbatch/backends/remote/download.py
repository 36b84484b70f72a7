"""A finished render's video: downloaded at once (its URL expires), and kept only if it is a whole video.

What never reaches the cache: an answer other than 200, a body that is not a video type, fewer bytes than
Content-Length, a file ffmpeg cannot open or that has no video stream, an mp4 whose boxes run past
the end of the file (a cut-off mp4 whose index comes first still opens in ffmpeg), and one whose sample
tables point past its end. The download goes to a `.part` file that becomes `clip.mp4` only when every
check has passed. Example::

    video = download(api, run, status.video_url)   # workdir/clip.mp4, or DownloadError / Gone
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from wanbatch.av.mp4 import VIDEO_CODECS, file_boxes, read_movie
from wanbatch.backends.remote.http import RETRY_STATUS, Api, _Transient, snippet
from wanbatch.backends.remote.probe import PROBES
from wanbatch.backends.remote.run import KEPT, Gone, Run
from wanbatch.errors import Cancelled, DownloadError

BINARY_TYPES = {"application/octet-stream", "binary/octet-stream", "application/mp4"}


class _Incomplete(Exception):
    """A download ended before Content-Length bytes arrived."""


def download(api: Api, run: Run, url: str) -> Path:
    """The video at `url` as `clip.mp4` in the job's workdir, checked whole."""
    part = run.ctx.workdir / f"download-{uuid.uuid4().hex}.part"
    timeout = api.timeout(download=True)
    total_s = api.settings.timeouts.download_total_s
    run.ctx.status("downloading")

    def attempt() -> None:
        # No Authorization header: the video lives on a storage host, which must never see the key.
        with api.client.stream("GET", url, timeout=timeout) as resp:
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
                raise DownloadError(
                    f"scene `{run.job.id}`: the video URL sent `{ctype}`, not a video; nothing was cached"
                )
            expected = resp.headers.get("content-length")
            deadline = time.monotonic() + total_s
            with open(part, "wb") as f:
                for chunk in resp.iter_bytes(1 << 16):
                    # Not on a first Ctrl-C (`cancel`): this render is paid for, and its URL may expire.
                    if run.ctx.abandon.is_set():
                        raise Cancelled(f"scene `{run.job.id}`: its download was abandoned; {KEPT}")
                    if time.monotonic() > deadline:
                        raise DownloadError(
                            f"scene `{run.job.id}`: the download took longer than {total_s:g}s; nothing was cached"
                        )
                    f.write(chunk)
            if expected is not None and resp.num_bytes_downloaded != int(expected):
                raise _Incomplete(f"{resp.num_bytes_downloaded} of {expected} bytes")

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


def mp4_whole(path: Path) -> bool:
    """Whether an ISO-BMFF (mp4/mov) file's top-level boxes end exactly at the end of the file. Other
    containers pass (ffmpeg judges them)."""
    with open(path, "rb") as f:
        if f.read(8)[4:8] != b"ftyp":
            return True
        end = 0
        for box in file_boxes(f):  # stops at a box cut off or invalid: its end is not the file's
            end = box.end
        return end == f.seek(0, 2)


__all__ = ["BINARY_TYPES", "check_video", "download", "mp4_whole"]
