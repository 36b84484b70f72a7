"""What the film is made of: its clips (`FilmClip`, `ClipInfo` read from mp4 headers), the stitch settings,
and the timeline (`layout`) that the copy path, the composer (`wanbatch.film.mix`) and the timeline export share.

The timeline: a clip's `transition` says how it joins the previous clip. `cut`: it starts when the previous
ends. `crossfade` (d seconds): it starts d seconds before the previous ends and dissolves in over them, so the
film is d shorter. `fade` (d seconds, fade through black): the previous clip fades to black over its last d/2
seconds and this one fades in from black over its first d/2; nothing overlaps, nothing is hidden. Film
duration = sum of the clip durations - the crossfade durations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wanbatch.av.ffmpeg import probe
from wanbatch.av.mp4 import read_movie
from wanbatch.config.checks import choice, flag, number
from wanbatch.config.schema import StitchConfig
from wanbatch.core.scene import Transition
from wanbatch.errors import ConfigError, Issue, RenderError

__all__ = [
    "ClipInfo",
    "FilmClip",
    "Layout",
    "StitchResult",
    "audio_words",
    "check_stitch",
    "layout",
    "num",
    "overlap",
    "probe_clips",
    "probe_unknown",
    "share",
]

MODES = ("auto", "copy", "compose")
FITS = ("letterbox", "crop", "stretch")
ON_FAILURE = ("slate", "skip", "none")


@dataclass(frozen=True)
class FilmClip:
    """One clip of the film. `transition` joins it to the previous clip (ignored for the first);
    `title` is a caption laid over its first seconds (see `wanbatch.film.mix`)."""

    path: Path
    scene_id: str
    transition: Transition = field(default_factory=Transition)
    title: str | None = None


@dataclass
class StitchResult:
    path: Path
    method: str  # "copy" | "compose"
    duration: float  # seconds of film
    seconds: float  # wall seconds spent
    reason: str  # why this method


def check_stitch(st: StitchConfig) -> StitchConfig:
    """The `stitch` group (StitchConfig: keys, types and defaults), checked for what a type cannot say; raises
    ConfigError with every problem. `enabled` is the caller's business."""
    issues: list[Issue] = []
    choice(issues, "stitch.mode", st.mode, MODES)
    choice(issues, "stitch.fit", st.fit, FITS)
    choice(issues, "stitch.on_failure", st.on_failure, ON_FAILURE)
    for key in ("fade_in", "fade_out", "title_seconds", "duck_ramp"):
        number(issues, f"stitch.{key}", getattr(st, key), minimum=0, allowed="a number of seconds >= 0")
    number(issues, "stitch.fps", st.fps, above=0, nullable=True)
    for key in ("width", "height"):
        v = getattr(st, key)
        if number(issues, f"stitch.{key}", v, above=0, integer=True, nullable=True, allowed=_EVEN) and (v or 0) % 2:
            issues.append(Issue(None, f"stitch.{key}", v, _EVEN))
    number(issues, "stitch.silence_db", st.silence_db, maximum=0, allowed="a level in dBFS <= 0, e.g. -60")
    flag(issues, "stitch.loop_soundtrack", st.loop_soundtrack)
    if issues:
        raise ConfigError(issues)
    return st


_EVEN = "an even number of pixels > 0 (H.264 4:2:0 needs even sizes), or null for the first clip's"


# -- 1. What the clips are ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipInfo:
    """What stitching needs to know of a clip. `copy_key` holds everything that must be equal across
    clips for a stream copy; the other fields describe the clip in words."""

    path: Path
    duration: float  # of the picture: what the clip lasts in a composed film
    container_duration: float  # of the file: what the concat demuxer advances by
    width: int
    height: int
    fps: float
    video_codec: str
    audio: tuple[str, int, int] | None  # (codec, sample rate, channels)
    copy_key: tuple[Any, ...] = field(repr=False)

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    def describe(self) -> str:
        audio = audio_words(self.audio)
        return f"{self.video_codec} {self.width}x{self.height} at {num(self.fps)} fps with {audio}"


def audio_words(audio: tuple[str, int, int] | None) -> str:
    return "no audio" if audio is None else f"{audio[0]} {audio[1]} Hz {_layout_name(audio[2])}"


def probe_clips(paths: Sequence[Path]) -> list[ClipInfo]:
    """Describe every clip, reading only its header.

    MP4/MOV clips (what every backend writes) are read in Python from their `moov` box: a few kilobytes,
    no process, so a stream-copy film costs little more than ffmpeg's concat itself. Anything else is
    probed with ffmpeg, all clips in parallel; then every clip is, so all are compared alike.
    """
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise RenderError(f"cannot stitch: clip {missing[0]} does not exist")
    infos = [_mp4_info(Path(p)) for p in paths]
    if all(i is not None for i in infos):
        return [i for i in infos if i is not None]
    with ThreadPoolExecutor(max_workers=min(8, len(paths))) as pool:
        return list(pool.map(_ffmpeg_info, [Path(p) for p in paths]))


def probe_unknown(paths: Sequence[Path], known: Mapping[Path, ClipInfo]) -> list[ClipInfo]:
    """Every clip described: as `known` says (headers a run read as each clip landed), the others probed now."""
    unknown = [p for p in paths if p not in known]
    found = dict(zip(unknown, probe_clips(unknown), strict=True)) if unknown else {}
    return [known[p] if p in known else found[p] for p in paths]


def mp4_header(path: Path) -> ClipInfo | None:
    """A clip described from its mp4 header alone (no process; what `probe_clips` reads first), or None when
    that cannot describe it."""
    try:
        return _mp4_info(Path(path))
    except (OSError, ValueError):
        return None


def _ffmpeg_info(path: Path) -> ClipInfo:
    try:
        p = probe(path)
    except ValueError as exc:
        raise RenderError(f"cannot stitch: {path} is not a readable video ({exc})") from exc
    if not p.has_video or p.width is None or p.height is None or not p.fps or p.duration is None:
        raise RenderError(f"cannot stitch: {path} has no video stream ffmpeg can describe")
    audio = (p.audio_codec or "?", p.sample_rate or 0, _channel_count(p.channels)) if p.has_audio else None
    key = ("ffmpeg", p.video_codec, p.pix_fmt, p.width, p.height, p.fps, audio)
    return ClipInfo(path, p.duration, p.duration, p.width, p.height, p.fps, p.video_codec or "?", audio, key)


def _mp4_info(path: Path) -> ClipInfo | None:
    """ClipInfo from an ISO-BMFF (mp4/mov) file's moov box; None when it is not one or has no video."""
    movie = read_movie(path)
    if movie is None:
        return None
    video, audio = movie.video, movie.audio
    if video is None or video.fps <= 0 or video.duration <= 0:  # e.g. fragmented mp4: ask ffmpeg
        return None
    a = None if audio is None else (audio.codec, audio.rate, audio.channels)
    key = ("mp4", video.signature, None if audio is None else audio.signature)
    return ClipInfo(path, video.duration, movie.duration, video.width, video.height, video.fps, video.codec, a, key)


# -- 2. The timeline --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where each clip sits in the film (seconds); `duration` is the film's."""

    starts: tuple[float, ...]
    durations: tuple[float, ...]
    duration: float


def overlap(transition: Transition) -> float:
    """How much a transition shortens the film: a crossfade overlaps the clips, a fade through black does not."""
    return transition.duration if transition.type == "crossfade" else 0.0


def share(transition: Transition) -> float:
    """How much of one clip a transition uses: all of a crossfade, half of a fade through black."""
    if transition.type == "crossfade":
        return transition.duration
    return transition.duration / 2 if transition.type == "fade" else 0.0


def layout(
    durations: Sequence[float], transitions: Sequence[Transition], scene_ids: Sequence[str] | None = None
) -> Layout:
    """Place clips on the film's timeline. `transitions[i]` joins clip i to clip i-1 (the first is ignored).

    Raises ConfigError when a transition does not fit: a clip must be long enough for the transition
    into it and the one out of it (a fade uses half its duration on each side).
    """
    ids = list(scene_ids) if scene_ids is not None else [f"#{i + 1}" for i in range(len(durations))]
    trans = [Transition(), *transitions[1:]]
    n = len(durations)
    issues: list[Issue] = []
    for j, d in enumerate(durations):
        need_in = share(trans[j]) if j else 0.0
        need_out = share(trans[j + 1]) if j + 1 < n else 0.0
        if need_in + need_out > d + 1e-6:
            culprit = j + 1 if need_out else j
            issues.append(
                Issue(
                    ids[culprit],
                    "transition.duration",
                    trans[culprit].duration,
                    f"short enough for scene `{ids[j]}` ({num(d)} s long) to hold its transitions; "
                    f"they take {num(need_in + need_out)} s of it (a fade takes half its duration "
                    f"from each side)",
                )
            )
    if issues:
        raise ConfigError(issues)
    starts: list[float] = []
    t = 0.0
    for i, d in enumerate(durations):
        if i:
            t -= overlap(trans[i])
        starts.append(t)
        t += d
    return Layout(tuple(starts), tuple(float(d) for d in durations), t)


# -- Words ------------------------------------------------------------------------------------------------


def _channel_count(layout_name: str | None) -> int:
    if not layout_name:
        return 0
    named = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "7.1": 8}
    m = re.match(r"(\d+) channels", layout_name)
    return int(m.group(1)) if m else named.get(layout_name.split("(")[0], 0)


def _layout_name(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels} channels")


def num(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")
