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
from typing import Any

from wanbatch.av.files import sha256_file
from wanbatch.av.whole import image_whole, media_whole

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


def inspect_local(field_name: str, path: Path) -> Media:
    """Read what validation needs (image size, audio/video duration) and prove the file whole: an image
    decodes to its last pixel under a pixel cap, audio decodes to its end, a video's structure is intact.
    Raises ValueError with the reason."""
    kind = KIND_OF_FIELD[field_name]
    if not path.exists():
        raise ValueError("no such file")
    if not path.is_file():
        raise ValueError("not a file")
    if not os.access(path, os.R_OK):
        raise ValueError("not readable")
    st = path.stat()
    memo_key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, kind)
    with _memo_lock:
        found = _memo.get(memo_key)
    if found is None:
        try:
            found = _inspect(kind, path)
        except ValueError as exc:
            found = str(exc)
        with _memo_lock:
            _memo[memo_key] = found
    if isinstance(found, str):
        raise ValueError(found)
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
# whole costs milliseconds. Keyed like the content hash, so an edited file is inspected again.
_memo: dict[tuple[str, int, int, str], tuple[int | None, int | None, float | None] | str] = {}
_memo_lock = threading.Lock()


def _inspect(kind: str, path: Path) -> tuple[int | None, int | None, float | None]:
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
