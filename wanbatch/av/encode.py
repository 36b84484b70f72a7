"""Frames to an mp4 clip, with the encoding settings from the `encode` config group.

The default (the schema's, `wanbatch.config.schema.EncodeConfig`) is near-lossless H.264, so a clip is faithful
to the frames the model made while still playing everywhere; every setting is config.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wanbatch.av.ffmpeg import run_ffmpeg

if TYPE_CHECKING:
    import numpy as np


@dataclass
class EncodeSettings:
    """How wanbatch encodes frames (clips, composed films). The `encode` config group's schema,
    `wanbatch.config.schema.EncodeConfig`, is this with its defaults; build one from there."""

    codec: str
    crf: int | None
    bitrate: str | None  # e.g. "8M"; used instead of crf when set
    preset: str
    pix_fmt: str
    audio_codec: str
    audio_bitrate: str
    audio_rate: int

    @classmethod
    def from_config(cls, cfg: EncodeSettings) -> EncodeSettings:
        """The `encode` group of a composed config (`load_config(...).encode`), typed and checked by its schema
        already; kept for scripts written against wanbatch 0.1, whose configs were plain dicts."""
        if not isinstance(cfg, EncodeSettings):
            raise TypeError(f"the `encode` group of a composed config, not {type(cfg).__name__}")
        return cfg

    def video_args(self) -> list[str]:
        args = ["-c:v", self.codec, "-pix_fmt", self.pix_fmt]
        if self.codec in ("libx264", "libx265"):
            args += ["-preset", self.preset]
        if self.bitrate:
            args += ["-b:v", self.bitrate]
        elif self.crf is not None:
            args += ["-crf", str(self.crf)]
        return args

    def audio_args(self) -> list[str]:
        return ["-c:a", self.audio_codec, "-b:a", self.audio_bitrate, "-ar", str(self.audio_rate), "-ac", "2"]

    def identity(self) -> dict[str, Any]:
        """Part of every cache key: the same frames encoded differently are different bytes."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def write_clip(
    frames: Iterable[np.ndarray],
    path: Path,
    *,
    fps: float,
    settings: EncodeSettings,
    audio: Path | None = None,
    silent_audio: bool = True,
) -> Path:
    """Encode RGB uint8 frames (H, W, 3) to `path`. With `audio`, it is laid under the clip (trimmed
    or padded to the video's length); with `silent_audio`, a silent track is added instead, so every
    clip has the same audio layout and films join by stream copy."""
    import imageio_ffmpeg
    import numpy as np  # here, not at the top: a fully cached run reads EncodeSettings and encodes nothing (~65 ms)

    it = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    video_only = path.with_name(path.stem + ".video.mp4")
    extra = settings.video_args()
    writer = imageio_ffmpeg.write_frames(
        str(video_only),
        (w, h),
        fps=fps,
        codec=settings.codec,
        quality=None,
        pix_fmt_out=settings.pix_fmt,
        macro_block_size=1,
        output_params=[a for a in extra if a not in ("-c:v", settings.codec, "-pix_fmt", settings.pix_fmt)],
        ffmpeg_log_level="error",
    )
    writer.send(None)
    n = 0
    for frame in _chain(first, it):
        writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
        n += 1
    writer.close()
    duration = n / fps
    if audio is None and not silent_audio:
        video_only.replace(path)
        return path
    if audio is not None:
        src = ["-i", str(video_only), "-i", str(audio)]
        afilter = ["-af", f"apad,atrim=0:{duration:.6f}"]
    else:
        src = ["-i", str(video_only), "-f", "lavfi", "-i", f"anullsrc=r={settings.audio_rate}:cl=stereo"]
        afilter = ["-af", f"atrim=0:{duration:.6f}"]
    run_ffmpeg(
        [
            *src,
            "-map",
            "0:v:0",
            "-map",
            "1:a:0",
            "-c:v",
            "copy",
            *settings.audio_args(),
            *afilter,
            "-t",
            f"{duration:.6f}",
            "-movflags",
            "+faststart",
            str(path),
        ]
    )
    video_only.unlink()
    return path


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    yield first
    yield from rest
