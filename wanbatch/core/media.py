"""Media inputs of a scene: where they are, what they hold, and their content hash.

A local file is identified by its bytes (sha256), never its path, so moving a file keeps the cache key.
Hashes are memoised on (path, size, mtime_ns): a file is read once per run however many scenes use it.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from wanbatch.av.files import sha256_file
from wanbatch.av.whole import image_whole, media_whole
from wanbatch.version import source_digest

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".avi"}
KIND_OF_FIELD = {"image": "image", "last_image": "image", "audio": "audio", "first_clip": "video"}


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


@dataclass(frozen=True)
class Media:
    """A resolved media input. Exactly one of `path` (local) and `url` (remote) is set."""

    field: str
    kind: str  # image | audio | video
    path: Path | None = None
    url: str | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    size_bytes: int | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    @property
    def is_local(self) -> bool:
        return self.path is not None

    def identity(self) -> dict[str, Any]:
        """What the cache key sees: content for a local file, the address for a URL."""
        if self.path is not None:
            return {"sha256": self.sha256}
        return {"url": self.url}

    def describe(self) -> str:
        return str(self.path) if self.path is not None else str(self.url)


Found = tuple[int | None, int | None, float | None]  # what a file was found to hold: width, height, duration


class Checks(Protocol):
    """Files found whole by earlier runs (wanbatch.cache.checked keeps them in the cache): `get` answers for a
    file whose identity (`file_identity`) is unchanged since, `put` remembers a new finding."""

    def get(self, identity: str) -> Found | None: ...

    def put(self, identity: str, found: Found) -> None: ...


def file_identity(real: str, st: os.stat_result, kind: str) -> str:
    """A file as it is now, for `Checks`: where it is, which inode, its size, and its modification and change
    times. Any write to the file moves its change time (ctime), which no tool can set back, so changed bytes
    never answer to an old finding (git's index trusts the same fields). The checking code's own digest is part
    of it: a wanbatch that checks more checks again."""
    checker = source_digest("wanbatch.av.whole", "wanbatch.core.media")
    return "\0".join(map(str, (checker, kind, real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)))


def inspect_local(field_name: str, path: Path, checks: Checks | None = None) -> Media:
    """Read what validation needs (image size, audio/video duration) and prove the file whole: an image
    decodes to its last pixel under a pixel cap, audio decodes to its end, a video's structure is intact.
    With `checks`, a file unchanged since an earlier run found it whole is not decoded again (a decode, and
    the ffmpeg or Pillow start behind it, took ~60 ms of a fully cached rerun of the demo).
    Raises ValueError with the reason."""
    kind = KIND_OF_FIELD[field_name]
    if not path.exists():
        raise ValueError("no such file")
    if not path.is_file():
        raise ValueError("not a file")
    if not os.access(path, os.R_OK):
        raise ValueError("not readable")
    st = path.stat()
    identity = file_identity(os.path.realpath(path), st, kind)
    with _memo_lock:
        found = _memo.get(identity)
    kept = False
    if found is None and checks is not None:
        found = checks.get(identity)
        kept = found is not None
    if found is None:
        try:
            found = _inspect(kind, path)
        except ValueError as exc:
            found = str(exc)  # a broken file is told again on every run, never remembered as broken
    with _memo_lock:
        _memo[identity] = found
    if isinstance(found, str):
        raise ValueError(found)
    if checks is not None and not kept:
        checks.put(identity, found)  # found now, or earlier in this process (a dry run, then the run)
    width, height, duration = found
    return Media(
        field=field_name,
        kind=kind,
        path=path.resolve(),
        sha256=sha256_file(path),
        width=width,
        height=height,
        duration=duration,
        size_bytes=st.st_size,
    )


# A file is inspected once per process (a sweep plans the same inputs for every member): decoding an image
# whole costs milliseconds. Keyed by the file's identity, so an edited file is inspected again.
_memo: dict[str, Found | str] = {}
_memo_lock = threading.Lock()


def _inspect(kind: str, path: Path) -> Found:
    if kind == "image":
        width, height = image_whole(path)
        return width, height, None
    p = media_whole(path, decode=kind == "audio")
    if kind == "audio" and not p.has_audio:
        raise ValueError("has no audio stream")
    if kind == "video" and not p.has_video:
        raise ValueError("has no video stream")
    return p.width, p.height, p.duration


def remote(field_name: str, url: str) -> Media:
    return Media(field=field_name, kind=KIND_OF_FIELD[field_name], url=url)
