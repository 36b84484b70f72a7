"""The compose path of film assembly: moviepy lays the clips out frame by frame and ffmpeg encodes the
film with exactly the `encode` arguments every clip got. `wanbatch.film.stitch` decides when to compose (when a
stream copy cannot make the film), checks the settings and places the clips on the timeline (`layout`,
where the transitions are described); this module draws and mixes the film.

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

How: moviepy drives the film, a VideoClip and an AudioClip whose frame functions lay the clips out. The
clips are read with one plain ffmpeg pipe each (what VideoFileClip does, minus its probe per clip and the
ResourceWarnings of its readers), scaled while decoding and opened one clip ahead so the start-up overlaps
the encode; so the film costs little more than its encode. Audio is decoded whole per clip (a few clips
ahead, in two threads) and for the soundtrack, so mixing is exact indexing.

Example (what `stitch_film` does when it composes)::

    lay = layout([i.duration for i in infos], [c.transition for c in clips], [c.scene_id for c in clips])
    compose_film(clips, infos, lay, Path("film.mp4"), StitchConfig(), EncodeConfig(), soundtrack=None)
"""

from __future__ import annotations

import bisect
import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np

from wanbatch.av.encode import EncodeSettings
from wanbatch.av.ffmpeg import ffmpeg_exe
from wanbatch.config.schema import StitchConfig
from wanbatch.core.project import Soundtrack
from wanbatch.core.scene import Transition
from wanbatch.errors import ConfigError, Issue, RenderError
from wanbatch.film.clips import ClipInfo, FilmClip, Layout, share

__all__ = ["compose_film"]


def compose_film(
    clips: Sequence[FilmClip],
    infos: Sequence[ClipInfo],
    lay: Layout,
    out: Path,
    st: StitchConfig,
    encode: EncodeSettings,
    soundtrack: Soundtrack | None,
) -> None:
    """Write the film of `clips` (read as `infos` describe them, placed by `lay`) to `out`, with the
    settings already checked by `stitch_film`. Raises RenderError when a clip or the soundtrack cannot be
    decoded or ffmpeg cannot encode the film."""
    from moviepy import AudioClip, VideoClip

    # 1. The film's format and its segments
    W, H = _film_size(st, infos[0])
    fps = st.fps or infos[0].fps
    total = lay.duration
    trans = [Transition(), *(c.transition for c in clips[1:]), Transition()]
    segs = [
        _Segment(
            c,
            info,
            s,
            d,
            incoming=trans[k],
            outgoing=trans[k + 1],
            size=(W, H),
            fit=st.fit,
            title_seconds=st.title_seconds,
            audio_rate=encode.audio_rate,
        )
        for k, (c, info, s, d) in enumerate(zip(clips, infos, lay.starts, lay.durations, strict=True))
    ]
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
        for done in segs[: max(0, k - 1)]:
            done.close()  # read in order: a clip that has ended is not read again
        if k + 1 < len(segs):
            segs[k + 1].open()  # start the next decoder now: its start-up overlaps this clip's encode
        active = [s for s in segs[max(0, k - 1) : k + 1] if s.start <= t < s.end] or [segs[k]]
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
        for seg, audible in zip(with_audio, _audible([s.clip.path for s in with_audio], st.silence_db), strict=True):
            seg.audible = audible
        if soundtrack.media.path is None:
            raise ConfigError(
                [Issue(None, "project.soundtrack.path", soundtrack.media.describe(), "a local audio file")]
            )
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
            for ahead in with_audio[i : i + 4]:
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


class _Segment:
    """One clip on the film's timeline, with its decoders started on first use and closed when done."""

    def __init__(
        self,
        clip: FilmClip,
        info: ClipInfo,
        start: float,
        duration: float,
        *,
        incoming: Transition,
        outgoing: Transition,
        size: tuple[int, int],
        fit: str,
        title_seconds: float,
        audio_rate: int,
    ):
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
            from wanbatch.film.titles import title_caption

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
            scale = (
                [] if self.scaled == (self.info.width, self.info.height) else ["-vf", f"scale={sw}:{sh}:flags=bicubic"]
            )
            self._proc = subprocess.Popen(
                [
                    ffmpeg_exe(),
                    "-nostdin",
                    "-v",
                    "error",
                    "-i",
                    str(self.clip.path),
                    "-map",
                    "0:v:0",
                    *scale,
                    "-f",
                    "rawvideo",
                    "-pix_fmt",
                    "rgb24",
                    "-",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
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
            canvas[cy0:cy1, cx0:cx1] = img[cy0 - y : cy1 - y, cx0 - x : cx1 - x]
            img = canvas
        if self.title is not None and ct < self.title_seconds:
            rgb, alpha, top = self.title
            a = alpha * _ramp(ct, self.title_seconds, 0.3)
            img = img.copy()
            band = img[top : top + rgb.shape[0]].astype(np.float32)
            img[top : top + rgb.shape[0]] = (band * (1 - a) + rgb * a + 0.5).astype(np.uint8)
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
            env = np.minimum(env, ct / share(self.incoming))
        if self.outgoing.type != "cut":
            env = np.minimum(env, (self.duration - ct) / share(self.outgoing))
        return np.clip(env, 0.0, 1.0)

    def brightness(self, ct: float) -> float:
        if self.incoming.type != "fade" and self.outgoing.type != "fade":
            return 1.0
        env = 1.0
        if self.incoming.type == "fade":
            env = min(env, ct / share(self.incoming))
        if self.outgoing.type == "fade":
            env = min(env, (self.duration - ct) / share(self.outgoing))
        return min(1.0, max(0.0, env))

    # -- sound
    def sound(self, ct: np.ndarray) -> np.ndarray:
        """Stereo samples at clip times `ct` (within the clip), faded with the picture at the joins."""
        if self._sound is None:
            self._sound = (
                self._pending.result() if self._pending is not None else _decode_audio(self.clip.path, self.audio_rate)
            )
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
        [
            ffmpeg_exe(),
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-f",
            "f32le",
            "-ac",
            "2",
            "-ar",
            str(rate),
            "-",
        ],
        capture_output=True,
        timeout=600,
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RenderError(f"cannot stitch: the audio of {path} could not be decoded: {' '.join(tail)}")
    return np.frombuffer(proc.stdout, np.float32).reshape(-1, 2)


_MAX_VOLUME = re.compile(r"max_volume:\s*(-?inf|-?[\d.]+) dB")


def _audible(paths: Sequence[Path], silence_db: float) -> list[bool]:
    """Whether each clip's audio peaks above `silence_db` dBFS (ffmpeg's volumedetect, in parallel)."""

    def one(path: Path) -> bool:
        proc = subprocess.run(
            [
                ffmpeg_exe(),
                "-hide_banner",
                "-nostdin",
                "-i",
                str(path),
                "-map",
                "0:a:0",
                "-vn",
                "-sn",
                "-dn",
                "-af",
                "volumedetect",
                "-f",
                "null",
                "-",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        m = _MAX_VOLUME.search(proc.stderr)
        if m is None:  # no audio ffmpeg can decode: nothing to duck under
            return False
        return m.group(1) not in ("-inf", "inf") and float(m.group(1)) > silence_db

    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(4, len(paths))) as pool:
        return list(pool.map(one, paths))


def _encode(
    frames: Iterator[np.ndarray],
    out: Path,
    size: tuple[int, int],
    fps: float,
    audio_in: list[str],
    encode: EncodeSettings,
    tmp: Path,
) -> None:
    rate = Fraction(fps).limit_denominator(1001)
    maps = ["-map", "0:v:0", *(["-map", "1:a:0", *encode.audio_args()] if audio_in else [])]
    log = tmp / "ffmpeg.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [
                ffmpeg_exe(),
                "-y",
                "-v",
                "error",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-s",
                f"{size[0]}x{size[1]}",
                "-framerate",
                f"{rate.numerator}/{rate.denominator}",
                "-i",
                "-",
                *audio_in,
                *maps,
                *encode.video_args(),
                "-movflags",
                "+faststart",
                str(out),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
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


def _film_size(st: StitchConfig, first: ClipInfo) -> tuple[int, int]:
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
