"""The film: the rendered clips, in scene order, joined into one file.

Two methods, chosen per film (`stitch.mode: auto`):

- **copy**: when every clip has the same codec and codec parameters, size, fps and audio layout (same
  audio codec, rate and channels, or no audio anywhere), every transition is a cut, and there is no
  soundtrack, fade or title caption, ffmpeg's concat demuxer joins the clips by stream copy
  (`-f concat -safe 0 -c copy`): no re-encode, no quality loss, about as fast as copying the files.
- **compose**: otherwise moviepy renders the film frame by frame (a `VideoClip` and an `AudioClip` whose
  frame functions lay the clips out), encoded by ffmpeg with exactly the `encode` arguments every clip got.
  The clips are decoded by one plain ffmpeg pipe each, scaled while decoding and started one clip ahead,
  so the film costs little more than its encode.

What compose does (the timeline model the timeline export shares, see `layout`):

- A clip's `transition` says how it joins the previous clip. `cut`: it starts when the previous ends.
  `crossfade` (d seconds): it starts d seconds before the previous ends and dissolves in over them, so the
  film is d shorter. `fade` (d seconds, fade through black): the previous clip fades to black over its
  last d/2 seconds and this one fades in from black over its first d/2; nothing overlaps, nothing is
  hidden. Film duration = sum of the clip durations - the crossfade durations.
- Size and fps are normalised to `stitch.width`/`height`/`fps` (default: the first clip's). `fit`:
  `letterbox` (default; scale to fit inside, black bars, nothing cropped or distorted), `crop` (scale to
  cover, centre crop) or `stretch`. ffmpeg scales while decoding; the fps is resampled by taking, for
  each film frame, the clip frame showing at that time.
- Scene audio is kept (faded with its picture at crossfades and fades; mono is spread to both channels
  at -3 dB, ffmpeg's constant-power upmix). The soundtrack is laid under
  at `volume` and ducked to `duck` while a scene whose own audio is audible plays (ffmpeg's volumedetect:
  a clip whose peak is below `silence_db` counts as silent, as the silent tracks clips carry for stream
  copy are), ramping over `duck_ramp` seconds around it. A soundtrack shorter than the film stops, or
  loops with `loop_soundtrack: true`. The mix is clipped to full scale.
- `fade_in`/`fade_out` fade the whole film, picture and sound, from and to black.
- A clip's `title` is a caption (a translucent lower-third band, see `titles.title_caption`) shown over
  its first `title_seconds`; it never changes the timing. Backends that draw their own title cards
  (`preview`) need no caption: pass `title` only for clips that do not show it.

Example::

    clips = [FilmClip(Path("a.mp4"), "a"), FilmClip(Path("b.mp4"), "b", Transition("crossfade", 0.5))]
    result = stitch_film(clips, Path("film.mp4"), settings={"mode": "auto"}, encode=EncodeSettings())
    result.method, result.reason   # ("compose", "scene `b` joins with a crossfade (0.5 s)")
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .encode import EncodeSettings
from .errors import ConfigError, Issue, RenderError
from .ffmpeg import ffmpeg_exe, probe, run_ffmpeg
from .project import Soundtrack
from .scene import Transition

__all__ = ["ClipInfo", "FilmClip", "Layout", "StitchResult", "StitchSettings", "layout", "probe_clips",
           "stitch_film"]

MODES = ("auto", "copy", "compose")
FITS = ("letterbox", "crop", "stretch")


@dataclass(frozen=True)
class FilmClip:
    """One clip of the film. `transition` joins it to the previous clip (ignored for the first);
    `title` is a caption laid over its first seconds (see the module doc)."""

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


@dataclass(frozen=True)
class StitchSettings:
    """The `stitch` config group, checked. `enabled` is the caller's business and ignored here."""

    mode: str = "auto"
    fade_in: float = 0.0
    fade_out: float = 0.0
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fit: str = "letterbox"
    title_seconds: float = 2.5
    duck_ramp: float = 0.3
    silence_db: float = -60.0
    loop_soundtrack: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> StitchSettings:
        cfg = {k: v for k, v in dict(cfg or {}).items() if k != "enabled"}
        known = {f.name for f in fields(cls)}
        issues = [Issue(None, f"stitch.{k}", cfg[k], f"unknown option; known: enabled, {', '.join(sorted(known))}")
                  for k in sorted(set(cfg) - known)]

        def number(key: str, *, positive: bool, allow_none: bool = False) -> None:
            v = cfg.get(key)
            if v is None and (allow_none or key not in cfg):
                return
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (v > 0 if positive else v >= 0)
            if not ok:
                what = "a number > 0" if positive else "a number of seconds >= 0"
                issues.append(Issue(None, f"stitch.{key}", v, what + (", or null" if allow_none else "")))

        if cfg.get("mode", "auto") not in MODES:
            issues.append(Issue(None, "stitch.mode", cfg.get("mode"), f"one of {', '.join(MODES)}"))
        if cfg.get("fit", "letterbox") not in FITS:
            issues.append(Issue(None, "stitch.fit", cfg.get("fit"), f"one of {', '.join(FITS)}"))
        for key in ("fade_in", "fade_out", "title_seconds", "duck_ramp"):
            number(key, positive=False)
        number("fps", positive=True, allow_none=True)
        for key in ("width", "height"):
            v = cfg.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0 or v % 2):
                issues.append(Issue(None, f"stitch.{key}", v, "an even number of pixels > 0 (H.264 4:2:0 needs "
                                                               "even sizes), or null for the first clip's"))
        sd = cfg.get("silence_db", -60.0)
        if isinstance(sd, bool) or not isinstance(sd, (int, float)) or sd > 0:
            issues.append(Issue(None, "stitch.silence_db", sd, "a level in dBFS <= 0, e.g. -60"))
        if not isinstance(cfg.get("loop_soundtrack", False), bool):
            issues.append(Issue(None, "stitch.loop_soundtrack", cfg.get("loop_soundtrack"), "true or false"))
        if issues:
            raise ConfigError(issues)
        for key in ("fade_in", "fade_out", "title_seconds", "duck_ramp", "silence_db"):
            if key in cfg:
                cfg[key] = float(cfg[key])
        if cfg.get("fps") is not None:
            cfg["fps"] = float(cfg["fps"])
        return cls(**cfg)


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
        audio = _audio_words(self.audio)
        return f"{self.video_codec} {self.width}x{self.height} at {_num(self.fps)} fps with {audio}"


def _audio_words(audio: tuple[str, int, int] | None) -> str:
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


def _share(transition: Transition) -> float:
    """How much of one clip a transition uses: all of a crossfade, half of a fade through black."""
    if transition.type == "crossfade":
        return transition.duration
    return transition.duration / 2 if transition.type == "fade" else 0.0


def layout(durations: Sequence[float], transitions: Sequence[Transition],
           scene_ids: Sequence[str] | None = None) -> Layout:
    """Place clips on the film's timeline. `transitions[i]` joins clip i to clip i-1 (the first is ignored).

    Raises ConfigError when a transition does not fit: a clip must be long enough for the transition
    into it and the one out of it (a fade uses half its duration on each side).
    """
    ids = list(scene_ids) if scene_ids is not None else [f"#{i + 1}" for i in range(len(durations))]
    trans = [Transition(), *transitions[1:]]
    n = len(durations)
    issues: list[Issue] = []
    for j, d in enumerate(durations):
        need_in = _share(trans[j]) if j else 0.0
        need_out = _share(trans[j + 1]) if j + 1 < n else 0.0
        if need_in + need_out > d + 1e-6:
            culprit = j + 1 if need_out else j
            issues.append(Issue(ids[culprit], "transition.duration", trans[culprit].duration,
                                f"short enough for scene `{ids[j]}` ({_num(d)} s long) to hold its transitions; "
                                f"they take {_num(need_in + need_out)} s of it (a fade takes half its duration "
                                f"from each side)"))
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


# -- 3. Choosing the method -------------------------------------------------------------------------------


def _reasons_against_copy(clips: Sequence[FilmClip], infos: Sequence[ClipInfo], st: StitchSettings,
                          soundtrack: Soundtrack | None) -> list[str]:
    reasons: list[str] = []
    if soundtrack is not None:
        reasons.append("a soundtrack is mixed under the film")
    if st.fade_in or st.fade_out:
        reasons.append(f"the film fades (fade_in {_num(st.fade_in)} s, fade_out {_num(st.fade_out)} s)")
    for clip in clips[1:]:
        if clip.transition.type != "cut":
            reasons.append(f"scene `{clip.scene_id}` joins with a {clip.transition.type} "
                           f"({_num(clip.transition.duration)} s)")
            break
    titled = [c.scene_id for c in clips if c.title]
    if titled:
        reasons.append(f"scene `{titled[0]}` has a title caption")
    first = infos[0]
    if (st.width and st.width != first.width) or (st.height and st.height != first.height):
        reasons.append(f"the film size is set to {st.width or first.width}x{st.height or first.height} "
                       f"but the clips are {first.width}x{first.height}")
    if st.fps and abs(st.fps - first.fps) > 1e-3:
        reasons.append(f"the film fps is set to {_num(st.fps)} but the clips are {_num(first.fps)} fps")
    for clip, info in zip(clips[1:], infos[1:], strict=True):
        diff = _difference(infos[0], info, clips[0].scene_id, clip.scene_id)
        if diff:
            reasons.append(diff)
            break
    return reasons


def _difference(a: ClipInfo, b: ClipInfo, a_id: str, b_id: str) -> str | None:
    """The first way two clips differ that stops a stream copy, in words; None if they do not."""
    if a.copy_key == b.copy_key:
        return None
    who = f"(`{a_id}`) vs {{}} (`{b_id}`)"
    if a.video_codec != b.video_codec:
        return f"clips differ in codec: {a.video_codec} " + who.format(b.video_codec)
    if (a.width, a.height) != (b.width, b.height):
        return f"clips differ in size: {a.width}x{a.height} " + who.format(f"{b.width}x{b.height}")
    if abs(a.fps - b.fps) > 1e-3:
        return f"clips differ in fps: {_num(a.fps)} " + who.format(_num(b.fps))
    if a.audio != b.audio:
        return f"clips differ in audio: {_audio_words(a.audio)} " + who.format(_audio_words(b.audio))
    return (f"clips differ in codec parameters (profile, pixel format or encoder settings) though both are "
            f"{a.video_codec} {a.width}x{a.height}: `{a_id}` vs `{b_id}`; a stream copy could break decoding "
            f"at the join")


# -- 4. The entry point -----------------------------------------------------------------------------------


def stitch_film(clips: list[FilmClip], out: Path, *, settings: Mapping[str, Any], encode: EncodeSettings,
                soundtrack: Soundtrack | None = None) -> StitchResult:
    """Join `clips` (in film order) into `out`, by stream copy when possible, else by composing.

    Raises ConfigError for invalid `settings`, for `mode: copy` when a stream copy is impossible (with
    the reason) and for transitions that do not fit their clips; RenderError when a clip is unreadable.
    The film is written beside `out` and moved into place when whole.
    """
    t0 = time.perf_counter()
    # 1. Check the settings and read the clips' headers
    st = StitchSettings.from_config(settings)
    if not clips:
        raise ValueError("stitch_film needs at least one clip")
    infos = probe_clips([c.path for c in clips])

    # 2. Choose the method
    against = _reasons_against_copy(clips, infos, st, soundtrack)
    if st.mode == "copy" and against:
        raise ConfigError([Issue(None, "stitch.mode", "copy", "`auto` or `compose`: the clips cannot be joined by "
                                 "stream copy because " + "; ".join(against))])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.stem}.part{out.suffix}")

    # 3. Make the film
    try:
        if st.mode == "compose" or against:
            lay = layout([i.duration for i in infos], [c.transition for c in clips], [c.scene_id for c in clips])
            _compose(clips, infos, lay, part, st, encode, soundtrack)
            method = "compose"
            reason = "; ".join(against) if against else "`stitch.mode` is compose"
            duration = lay.duration
        else:
            _concat_copy([c.path for c in clips], part)
            method = "copy"
            reason = (f"all {len(clips)} clips are {infos[0].describe()} and every transition is a cut"
                      if len(clips) > 1 else f"a single clip ({infos[0].describe()}), nothing to compose")
            duration = sum(i.container_duration for i in infos)
        os.replace(part, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return StitchResult(out, method, duration, time.perf_counter() - t0, reason)


# -- 5. copy: ffmpeg's concat demuxer -------------------------------------------------------------------


def _concat_copy(paths: Sequence[Path], out: Path) -> None:
    # The list file sits beside the film: same filesystem, cleaned up with it. Quotes in paths are
    # escaped the concat demuxer's way ('\'').
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=out.parent, prefix=".concat-", delete=False) as f:
        for p in paths:
            quoted = str(Path(p).resolve()).replace("'", "'\\''")
            f.write(f"file '{quoted}'\n")
        listing = Path(f.name)
    try:
        run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(out)])
    finally:
        listing.unlink()


# -- 6. compose: moviepy ----------------------------------------------------------------------------------
#
# moviepy drives the film: a VideoClip and an AudioClip whose frame functions lay the clips out. The clips
# are read with one plain ffmpeg pipe each (what VideoFileClip does, minus its probe per clip and the
# ResourceWarnings of its readers), scaled while decoding and opened one clip ahead so the start-up
# overlaps the encode. Audio is decoded whole per clip (a few clips ahead, in two threads) and for the
# soundtrack, so mixing is exact indexing.


class _Segment:
    """One clip on the film's timeline, with its decoders started on first use and closed when done."""

    def __init__(self, clip: FilmClip, info: ClipInfo, start: float, duration: float, *,
                 incoming: Transition, outgoing: Transition, size: tuple[int, int], fit: str,
                 title_seconds: float, audio_rate: int):
        self.clip, self.info, self.start, self.duration = clip, info, start, duration
        self.end = start + duration
        self.incoming, self.outgoing = incoming, outgoing
        self.audio_rate = audio_rate
        self.audible = False
        W, H = size
        w, h = info.width, info.height
        # Where the decoded (scaled) picture goes on the film's canvas; (x, y) < 0 means cropped.
        if fit == "stretch" or (w, h) == (W, H):
            self.scaled, self.offset = (W, H), (0, 0)
        else:
            scale = min(W / w, H / h) if fit == "letterbox" else max(W / w, H / h)
            sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
            sw, sh = (min(sw, W), min(sh, H)) if fit == "letterbox" else (max(sw, W), max(sh, H))
            self.scaled, self.offset = (sw, sh), ((W - sw) // 2, (H - sh) // 2)
        self.size = size
        self.n_frames = max(1, round(info.duration * info.fps))
        self.title: tuple[np.ndarray, np.ndarray, int] | None = None  # (rgb, alpha, top row)
        self.title_seconds = min(title_seconds, duration)
        if clip.title:
            from .titles import title_caption

            rgba, top = title_caption(clip.title, W, H)
            self.title = (rgba[..., :3].astype(np.float32), rgba[..., 3:].astype(np.float32) / 255.0, top)
        self._proc: subprocess.Popen[bytes] | None = None
        self._index = -1
        self._last: np.ndarray | None = None
        self._sound: np.ndarray | None = None
        self._pending: Future[np.ndarray] | None = None
        self._sound_done = False

    # -- picture
    def open(self) -> None:
        if self._proc is None and self._last is None:
            sw, sh = self.scaled
            scale = [] if self.scaled == (self.info.width, self.info.height) else \
                ["-vf", f"scale={sw}:{sh}:flags=bicubic"]
            self._proc = subprocess.Popen(
                [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(self.clip.path), "-map", "0:v:0", *scale,
                 "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )

    def frame(self, ct: float) -> np.ndarray:
        """The clip's picture at clip time `ct` on the film's canvas, with its caption. Frames are read
        forward only (the film is written in order): the frame showing at `ct` is the last one started."""
        want = min(max(int(ct * self.info.fps + 1e-5), 0), self.n_frames - 1)
        sw, sh = self.scaled
        nbytes = sw * sh * 3
        while self._index < want:
            self.open()
            assert self._proc is not None and self._proc.stdout is not None
            raw = self._proc.stdout.read(nbytes)
            if len(raw) < nbytes:  # the stream was a frame short of its header: hold the last frame
                if self._last is None:
                    raise RenderError(f"cannot stitch: no frame could be decoded from {self.clip.path}")
                self.n_frames = self._index + 1
                break
            self._last = np.frombuffer(raw, np.uint8).reshape(sh, sw, 3)
            self._index += 1
        assert self._last is not None
        img = self._last
        (W, H), (x, y) = self.size, self.offset
        if (sw, sh) != (W, H):
            canvas = np.zeros((H, W, 3), np.uint8)
            # the picture placed at (x, y), intersected with the canvas: pads or crops as needed
            cx0, cy0, cx1, cy1 = max(0, x), max(0, y), min(W, x + sw), min(H, y + sh)
            canvas[cy0:cy1, cx0:cx1] = img[cy0 - y:cy1 - y, cx0 - x:cx1 - x]
            img = canvas
        if self.title is not None and ct < self.title_seconds:
            rgb, alpha, top = self.title
            a = alpha * _ramp(ct, self.title_seconds, 0.3)
            img = img.copy()
            band = img[top:top + rgb.shape[0]].astype(np.float32)
            img[top:top + rgb.shape[0]] = (band * (1 - a) + rgb * a + 0.5).astype(np.uint8)
        return img

    def crossfade_alpha(self, ct: float) -> float:
        if self.incoming.type == "crossfade" and ct < self.incoming.duration:
            return max(0.0, ct / self.incoming.duration)
        return 1.0

    def envelope(self, ct: np.ndarray) -> np.ndarray:
        """Gain at clip times `ct` from the joins: crossfades ramp over their duration; a fade through
        black goes down to 0 at the join, over half its duration on each side."""
        env = np.ones_like(ct, dtype=float)
        if self.incoming.type != "cut":
            env = np.minimum(env, ct / _share(self.incoming))
        if self.outgoing.type != "cut":
            env = np.minimum(env, (self.duration - ct) / _share(self.outgoing))
        return np.clip(env, 0.0, 1.0)

    def brightness(self, ct: float) -> float:
        if self.incoming.type != "fade" and self.outgoing.type != "fade":
            return 1.0
        env = 1.0
        if self.incoming.type == "fade":
            env = min(env, ct / _share(self.incoming))
        if self.outgoing.type == "fade":
            env = min(env, (self.duration - ct) / _share(self.outgoing))
        return min(1.0, max(0.0, env))

    # -- sound
    def sound(self, ct: np.ndarray) -> np.ndarray:
        """Stereo samples at clip times `ct` (within the clip), faded with the picture at the joins."""
        if self._sound is None:
            self._sound = (self._pending.result() if self._pending is not None
                           else _decode_audio(self.clip.path, self.audio_rate))
            self._pending = None
        idx = np.round(ct * self.audio_rate).astype(np.int64)
        out = np.zeros((len(ct), 2))
        ok = idx < len(self._sound)
        out[ok] = self._sound[idx[ok]]
        return out * self.envelope(ct)[:, None]

    def prefetch_sound(self, pool: ThreadPoolExecutor) -> None:
        if self._sound is None and self._pending is None and not self._sound_done:
            self._pending = pool.submit(_decode_audio, self.clip.path, self.audio_rate)

    def drop_sound(self) -> None:
        self._sound, self._pending, self._sound_done = None, None, True

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            assert self._proc.stdout is not None
            self._proc.stdout.close()
            self._proc.wait()
            self._proc = None
        self._sound = None


def _decode_audio(path: Path, rate: int) -> np.ndarray:
    """The clip's audio, whole, as float32 stereo at `rate` (a few MB for a clip of seconds)."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "-ac", "2",
         "-ar", str(rate), "-"], capture_output=True, timeout=600,
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RenderError(f"cannot stitch: the audio of {path} could not be decoded: {' '.join(tail)}")
    return np.frombuffer(proc.stdout, np.float32).reshape(-1, 2)


def _compose(clips: Sequence[FilmClip], infos: Sequence[ClipInfo], lay: Layout, out: Path,
             st: StitchSettings, encode: EncodeSettings, soundtrack: Soundtrack | None) -> None:
    from moviepy import AudioClip, VideoClip

    # 1. The film's format and its segments
    W, H = _film_size(st, infos[0])
    fps = st.fps or infos[0].fps
    total = lay.duration
    if st.fade_in + st.fade_out > total + 1e-6:
        raise ConfigError([Issue(None, "stitch.fade_in", st.fade_in, f"fade_in + fade_out at most the film's "
                                 f"{_num(total)} s (fade_out is {_num(st.fade_out)} s)")])
    trans = [Transition(), *(c.transition for c in clips[1:]), Transition()]
    segs = [_Segment(c, info, s, d, incoming=trans[k], outgoing=trans[k + 1], size=(W, H), fit=st.fit,
                     title_seconds=st.title_seconds, audio_rate=encode.audio_rate)
            for k, (c, info, s, d) in enumerate(zip(clips, infos, lay.starts, lay.durations, strict=True))]
    starts = [s.start for s in segs]

    def film_gain(t: np.ndarray) -> np.ndarray:
        g = np.ones_like(t)
        if st.fade_in:
            g = np.minimum(g, t / st.fade_in)
        if st.fade_out:
            g = np.minimum(g, (total - t) / st.fade_out)
        return np.clip(g, 0.0, 1.0)

    # 2. The picture: one clip untouched for most frames; two blended during a crossfade.
    def frame_at(t: float) -> np.ndarray:
        k = max(0, bisect.bisect_right(starts, t) - 1)
        for done in segs[:max(0, k - 1)]:
            done.close()  # read in order: a clip that has ended is not read again
        if k + 1 < len(segs):
            segs[k + 1].open()  # start the next decoder now: its start-up overlaps this clip's encode
        active = [s for s in segs[max(0, k - 1):k + 1] if s.start <= t < s.end] or [segs[k]]
        gain = float(film_gain(np.array([t]))[0])
        if len(active) == 1:
            seg = active[0]
            ct = t - seg.start
            g = gain * seg.brightness(ct)
            img = seg.frame(ct)
            return img if g >= 1.0 else (img * np.float32(g) + np.float32(0.5)).astype(np.uint8)
        acc = np.zeros((H, W, 3), np.float32)
        for seg in active:
            ct = t - seg.start
            a = seg.crossfade_alpha(ct)
            acc *= 1.0 - a
            acc += seg.frame(ct).astype(np.float32) * np.float32(a * seg.brightness(ct) * gain)
        return np.clip(acc + 0.5, 0, 255).astype(np.uint8)

    # 3. The sound: scene audio, the soundtrack under it (ducked), the film's fades, clipped to full scale
    rate = encode.audio_rate
    with_audio = [s for s in segs if s.info.has_audio]
    # Scene audio is decoded whole, a few clips ahead of the mix, two at a time; a clip's samples are
    # dropped once the mix has passed it, so memory stays a few clips' worth however long the film.
    pool = ThreadPoolExecutor(max_workers=2)
    music: np.ndarray | None = None
    if soundtrack is not None:
        for seg, audible in zip(with_audio, _audible([s.clip.path for s in with_audio], st.silence_db),
                                strict=True):
            seg.audible = audible
        if soundtrack.media.path is None:
            raise ConfigError([Issue(None, "project.soundtrack.path", soundtrack.media.describe(),
                                     "a local audio file")])
        # decoded whole (384 KB a second): indexing is then exact, looping trivial
        music = _decode_audio(soundtrack.media.path, rate)
        if not len(music):
            raise RenderError(f"cannot stitch: the soundtrack {soundtrack.media.path} holds no audio")
    ducked = [(s.start, s.end) for s in segs if s.audible]

    def music_at(tt: np.ndarray) -> np.ndarray:
        assert music is not None
        idx = np.round(tt * rate).astype(np.int64)
        if st.loop_soundtrack:
            idx %= len(music)
        out = np.zeros((len(tt), 2))
        ok = (idx >= 0) & (idx < len(music))
        out[ok] = music[idx[ok]]
        return out

    def music_gain(t: np.ndarray) -> np.ndarray:
        assert soundtrack is not None
        r = max(st.duck_ramp, 1e-3)
        depth = np.zeros(len(t))
        for s, e in ducked:
            # fully down over the scene, ramping down in the `duck_ramp` seconds before it and up after
            depth = np.maximum(depth, np.clip(np.minimum((t - (s - r)) / r, ((e + r) - t) / r), 0.0, 1.0))
        return soundtrack.volume + (soundtrack.duck - soundtrack.volume) * depth

    def sound_at(t: np.ndarray | float) -> np.ndarray:
        tt = np.atleast_1d(np.asarray(t, dtype=float))
        mix = np.zeros((len(tt), 2))
        lo, hi = float(tt.min()), float(tt.max())
        for i, seg in enumerate(with_audio):
            if seg.end <= lo:
                seg.drop_sound()
                continue
            if seg.start > hi:
                continue
            for ahead in with_audio[i:i + 4]:
                ahead.prefetch_sound(pool)
            ct = tt - seg.start
            m = (ct >= 0) & (ct < seg.duration)
            if m.any():
                mix[m] += seg.sound(ct[m])
        if music is not None:
            mix += music_at(tt) * music_gain(tt)[:, None]
        mix *= film_gain(tt)[:, None]
        np.clip(mix, -1.0, 1.0, out=mix)
        return mix if isinstance(t, np.ndarray) else mix[0]

    # 4. Encode. moviepy yields the frames and the sound; ffmpeg encodes them with exactly the `encode`
    # arguments every clip got (write_videofile would force its own -pix_fmt and round the fps).
    video = VideoClip(frame_function=frame_at, duration=total)
    has_sound = bool(with_audio) or music is not None
    sound = AudioClip(frame_function=sound_at, duration=total, fps=rate) if has_sound else None
    try:
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".stitch-") as tmp:
            audio_in: list[str] = []
            if sound is not None:
                raw = Path(tmp) / "sound.f32"
                with open(raw, "wb") as f:
                    for chunk in sound.iter_chunks(chunksize=rate, fps=rate, nbytes=4):
                        f.write(np.asarray(chunk, dtype="<f4").tobytes())
                audio_in = ["-f", "f32le", "-ar", str(rate), "-ac", "2", "-i", str(raw)]
            _encode(video.iter_frames(fps=fps, dtype="uint8"), out, (W, H), fps, audio_in, encode, Path(tmp))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for seg in segs:
            seg.close()


def _encode(frames: Iterator[np.ndarray], out: Path, size: tuple[int, int], fps: float, audio_in: list[str],
            encode: EncodeSettings, tmp: Path) -> None:
    rate = Fraction(fps).limit_denominator(1001)
    maps = ["-map", "0:v:0", *(["-map", "1:a:0", *encode.audio_args()] if audio_in else [])]
    log = tmp / "ffmpeg.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}",
             "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-", *audio_in, *maps,
             *encode.video_args(), "-movflags", "+faststart", str(out)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
        )
        assert proc.stdin is not None
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError:
            pass  # ffmpeg stopped; its log says why
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            code = proc.wait()
    if code != 0:
        tail = " ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
        raise RenderError(f"the film could not be encoded (ffmpeg exit {code}): {tail}")


def _film_size(st: StitchSettings, first: ClipInfo) -> tuple[int, int]:
    if st.width and st.height:
        return st.width, st.height
    if st.width:  # keep the first clip's aspect ratio, rounded to even
        return st.width, max(2, round(st.width * first.height / first.width / 2) * 2)
    if st.height:
        return max(2, round(st.height * first.width / first.height / 2) * 2), st.height
    return first.width, first.height


def _ramp(ct: float, length: float, edge: float) -> float:
    """1 inside [0, length], ramping up over the first `edge` seconds and down over the last."""
    edge = max(1e-3, min(edge, length / 2))
    return max(0.0, min(1.0, ct / edge, (length - ct) / edge))


_MAX_VOLUME = re.compile(r"max_volume:\s*(-?inf|-?[\d.]+) dB")


def _audible(paths: Sequence[Path], silence_db: float) -> list[bool]:
    """Whether each clip's audio peaks above `silence_db` dBFS (ffmpeg's volumedetect, in parallel)."""

    def one(path: Path) -> bool:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0", "-vn", "-sn", "-dn",
             "-af", "volumedetect", "-f", "null", "-"],
            capture_output=True, text=True, timeout=600,
        )
        m = _MAX_VOLUME.search(proc.stderr)
        if m is None:  # no audio ffmpeg can decode: nothing to duck under
            return False
        return m.group(1) not in ("-inf", "inf") and float(m.group(1)) > silence_db

    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(4, len(paths))) as pool:
        return list(pool.map(one, paths))


# -- 7. MP4 headers ---------------------------------------------------------------------------------------

_CODECS = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc", b"av01": "av1", b"vp09": "vp9",
           b"mp4v": "mpeg4", b"mp4a": "aac", b"Opus": "opus", b"fLaC": "flac", b".mp3": "mp3", b"ac-3": "ac3"}
_AUDIO_OTI = {0x40: "aac", 0x66: "aac", 0x67: "aac", 0x68: "aac", 0x69: "mp3", 0x6B: "mp3"}
_CONFIG_BOXES = (b"avcC", b"hvcC", b"av1C", b"vpcC", b"esds", b"dOps", b"dfLa", b"pasp", b"colr")


def _mp4_info(path: Path) -> ClipInfo | None:
    """ClipInfo from an ISO-BMFF (mp4/mov) file's moov box; None when it is not one or has no video."""
    try:
        moov = _read_moov(path)
        if moov is None:
            return None
        return _parse_moov(path, moov)
    except (struct.error, IndexError, ValueError, ZeroDivisionError):
        return None


def _read_moov(path: Path) -> bytes | None:
    with open(path, "rb") as f:
        size_total = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8 or head[4:8] not in (b"ftyp", b"moov", b"wide", b"free", b"mdat", b"skip"):
            return None
        pos = 0
        while pos + 8 <= size_total:
            f.seek(pos)
            head = f.read(16)
            size, kind = struct.unpack_from(">I4s", head)
            header = 8
            if size == 1:
                size, header = struct.unpack_from(">Q", head, 8)[0], 16
            elif size == 0:
                size = size_total - pos
            if size < header:
                return None
            if kind == b"moov":
                f.seek(pos + header)
                return f.read(size - header)
            pos += size
    return None


def _boxes(buf: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box in buf[start:end]."""
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, i)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", buf, i + 8)[0], 16
        elif size == 0:
            size = end - i
        if size < header or i + size > end:
            return
        yield kind, i + header, i + size
        i += size


def _find(buf: bytes, start: int, end: int, *path: bytes) -> tuple[int, int] | None:
    for kind, s, e in _boxes(buf, start, end):
        if kind == path[0]:
            return (s, e) if len(path) == 1 else _find(buf, s, e, *path[1:])
    return None


def _time_box(buf: bytes, s: int) -> tuple[int, int]:
    """(timescale, duration) of an mvhd or mdhd box payload."""
    if buf[s] == 1:
        return struct.unpack_from(">I", buf, s + 20)[0], struct.unpack_from(">Q", buf, s + 24)[0]
    return struct.unpack_from(">II", buf, s + 12)


def _parse_moov(path: Path, moov: bytes) -> ClipInfo | None:
    mvhd = _find(moov, 0, len(moov), b"mvhd")
    if mvhd is None:
        return None
    scale, dur = _time_box(moov, mvhd[0])
    container = dur / scale
    video: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    for kind, s, e in _boxes(moov, 0, len(moov)):
        if kind != b"trak":
            continue
        hdlr = _find(moov, s, e, b"mdia", b"hdlr")
        mdhd = _find(moov, s, e, b"mdia", b"mdhd")
        stbl = _find(moov, s, e, b"mdia", b"minf", b"stbl")
        if hdlr is None or mdhd is None or stbl is None:
            continue
        handler = moov[hdlr[0] + 8:hdlr[0] + 12]
        if (handler == b"vide" and video is None) or (handler == b"soun" and audio is None):
            track = _parse_track(moov, handler, mdhd, stbl)
            if handler == b"vide":
                video = track
            else:
                audio = track
    if video is None or video["fps"] <= 0 or video["duration"] <= 0:  # e.g. fragmented mp4: ask ffmpeg
        return None
    a = None if audio is None else (audio["codec"], audio["rate"], audio["channels"])
    key = ("mp4", video["key"], None if audio is None else audio["key"])
    return ClipInfo(path, video["duration"], container, video["width"], video["height"], video["fps"],
                    video["codec"], a, key)


def _parse_track(buf: bytes, handler: bytes, mdhd: tuple[int, int], stbl: tuple[int, int]) -> dict[str, Any]:
    timescale, duration = _time_box(buf, mdhd[0])
    stsd = _find(buf, stbl[0], stbl[1], b"stsd")
    if stsd is None:
        raise ValueError("no stsd")
    n_entries = struct.unpack_from(">I", buf, stsd[0] + 4)[0]
    entries = list(_boxes(buf, stsd[0] + 8, stsd[1]))
    if n_entries != 1 or len(entries) != 1:
        raise ValueError("not exactly one sample description")
    fourcc, es, ee = entries[0]
    codec = _CODECS.get(fourcc, fourcc.decode("latin-1").strip())
    if handler == b"vide":
        width, height = struct.unpack_from(">HH", buf, es + 24)
        configs = tuple((k, buf[s:e]) for k, s, e in _boxes(buf, es + 78, ee) if k in _CONFIG_BOXES)
        stts = _find(buf, stbl[0], stbl[1], b"stts")
        has_delta = stts is not None and struct.unpack_from(">I", buf, stts[0] + 4)[0] > 0
        delta = struct.unpack_from(">I", buf, stts[0] + 12)[0] if stts is not None and has_delta else 0
        fps = Fraction(timescale, delta) if delta else Fraction(0)
        return {"codec": codec, "width": width, "height": height, "fps": float(fps), "duration": duration / timescale,
                "key": (fourcc, width, height, fps, configs)}
    version = struct.unpack_from(">H", buf, es + 8)[0]
    channels = struct.unpack_from(">H", buf, es + 16)[0]
    rate = struct.unpack_from(">I", buf, es + 24)[0] >> 16
    children = es + 28 + {1: 16, 2: 36}.get(version, 0)
    config: tuple[Any, ...] = ()
    for k, s, e in _boxes(buf, children, ee):
        if k == b"esds":
            oti, dsi = _esds(buf[s + 4:e])  # skip version/flags
            codec = _AUDIO_OTI.get(oti, codec)
            config = (oti, dsi)  # not the bitrates esds also holds: those differ clip to clip
        elif k in _CONFIG_BOXES:
            config = (k, buf[s:e])
    if version == 2:  # QuickTime v2: the real rate and channels are further on
        rate = int(struct.unpack_from(">d", buf, es + 32)[0])
        channels = struct.unpack_from(">I", buf, es + 40)[0]
    return {"codec": codec, "rate": rate, "channels": channels, "key": (fourcc, rate, channels, config)}


def _esds(d: bytes) -> tuple[int, bytes]:
    """(objectTypeIndication, DecoderSpecificInfo bytes) from an esds payload's descriptors."""
    oti, dsi = 0, b""

    def walk(i: int, end: int) -> None:
        nonlocal oti, dsi
        while i + 2 <= end:
            tag = d[i]
            i += 1
            length = 0
            for _ in range(4):
                b = d[i]
                i += 1
                length = (length << 7) | (b & 0x7F)
                if not b & 0x80:
                    break
            body_end = min(end, i + length)
            if tag == 0x03:  # ES_Descriptor: ES_ID, flags, optional fields, then sub-descriptors
                flags = d[i + 2]
                j = i + 3 + (2 if flags & 0x80 else 0)
                if flags & 0x40:
                    j += 1 + d[j]
                j += 2 if flags & 0x20 else 0
                walk(j, body_end)
            elif tag == 0x04:  # DecoderConfigDescriptor: OTI, stream type, buffer, bitrates, then DSI
                oti = d[i]
                walk(i + 13, body_end)
            elif tag == 0x05:
                dsi = bytes(d[i:body_end])
            i = body_end

    walk(0, len(d))
    return oti, dsi


def _channel_count(layout_name: str | None) -> int:
    if not layout_name:
        return 0
    named = {"mono": 1, "stereo": 2, "2.1": 3, "quad": 4, "5.0": 5, "5.1": 6, "7.1": 8}
    m = re.match(r"(\d+) channels", layout_name)
    return int(m.group(1)) if m else named.get(layout_name.split("(")[0], 0)


def _layout_name(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels} channels")


def _num(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")
