"""The clips the fake provider serves: real, tiny mp4s (H.264 + silent AAC) made with wanbatch's encoder.

One clip per (size, length, colour) is encoded once and kept in memory, so serving 200 jobs costs a handful
of encodes; the encode starts when a job is submitted (`prepare`), so its download does not wait for it.
The colour follows the seed (eight colours), so neighbouring scenes differ, and each job's copy carries its
id in a `free` box, so no two jobs' files are the same bytes.
"""

from __future__ import annotations

import io
import tempfile
import threading
from pathlib import Path

import numpy as np

PALETTE = [
    (200, 60, 50),
    (60, 160, 80),
    (50, 90, 200),
    (220, 180, 40),
    (150, 70, 180),
    (40, 170, 170),
    (230, 120, 40),
    (120, 120, 120),
]

_clips: dict[tuple[int, int, int, int, int], bytes] = {}
_locks: dict[tuple[int, int, int, int, int], threading.Lock] = {}
_guard = threading.Lock()
_thumb: bytes | None = None


def _even(n: float) -> int:
    return max(16, round(n / 2) * 2)


def _key(width: int, height: int, seconds: int, seed: int, scale: float, fps: int) -> tuple[int, int, int, int, int]:
    return (_even(width * scale), _even(height * scale), max(1, seconds), seed % len(PALETTE), fps)


def prepare(width: int, height: int, seconds: int, seed: int, *, scale: float, fps: int) -> None:
    """Start encoding a job's clip in the background, if it is not made yet: a real provider renders while
    the job runs, so a download when the job is done must not wait for an encode."""
    key = _key(width, height, seconds, seed, scale, fps)
    with _guard:
        if key in _clips or key in _locks:  # made, or being made
            return
        _locks[key] = threading.Lock()
    threading.Thread(
        target=clip_bytes,
        args=(width, height, seconds, seed),
        kwargs={"scale": scale, "fps": fps},
        name="wanbatch-fakeprovider-encode",
        daemon=True,
    ).start()


def clip_bytes(width: int, height: int, seconds: int, seed: int, *, scale: float, fps: int) -> bytes:
    """An mp4 of `seconds` at `scale` x (width, height): a colour field with a bar sweeping across."""
    key = _key(width, height, seconds, seed, scale, fps)
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _clips:
            _clips[key] = _encode(*key)
        return _clips[key]


def tagged(clip: bytes, tag: str) -> bytes:
    """The clip with a trailing `free` box naming the job: every job gets its own bytes (as real renders
    do) at no encoding cost; players and ffmpeg skip `free` boxes."""
    payload = tag.encode()
    return clip + (8 + len(payload)).to_bytes(4, "big") + b"free" + payload


def _encode(w: int, h: int, seconds: int, colour: int, fps: int) -> bytes:
    from wanbatch.av.encode import write_clip
    from wanbatch.config.schema import EncodeConfig

    base = np.array(PALETTE[colour], dtype=np.uint8)
    n = seconds * fps
    bar = max(2, w // 10)

    def frames() -> object:
        for i in range(n):
            frame = np.empty((h, w, 3), dtype=np.uint8)
            frame[:] = base
            x = int((w - bar) * i / max(1, n - 1))
            frame[:, x : x + bar] = 255
            yield frame

    settings = EncodeConfig(preset="ultrafast", crf=30)
    with tempfile.TemporaryDirectory(prefix="wanbatch-fake-") as tmp:
        path = Path(tmp) / "clip.mp4"
        write_clip(frames(), path, fps=fps, settings=settings)  # type: ignore[arg-type]
        return path.read_bytes()


def thumbnail() -> bytes:
    global _thumb
    if _thumb is None:
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (32, 18), PALETTE[0]).save(buf, format="PNG")
        _thumb = buf.getvalue()
    return _thumb
