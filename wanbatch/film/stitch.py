"""The film: the rendered clips, in scene order, joined into one file.

Two methods, chosen per film (`stitch.mode: auto`):

- **copy**: when every clip has the same codec and codec parameters, size, fps and audio layout (same
  audio codec, rate and channels, or no audio anywhere), every transition is a cut, and there is no
  soundtrack, fade or title caption, the clips are joined by stream copy: no re-encode, no quality loss.
  mp4 clips alike in every track are joined by their sample tables (`wanbatch.av.mp4join`: as fast as copying
  the files, and each clip's audio edits are kept); any others by ffmpeg's concat demuxer
  (`-f concat -safe 0 -c copy`).
- **compose**: otherwise moviepy renders the film frame by frame, encoded by ffmpeg with exactly the
  `encode` arguments every clip got (see `wanbatch.film.mix`: size and fps, sound and ducking, fades, titles).

This module holds the choice of method, the copy path and the entry point, `stitch_film`; what the clips are
and the timeline live in `wanbatch.film.clips`.

Example::

    clips = [FilmClip(Path("a.mp4"), "a"), FilmClip(Path("b.mp4"), "b", Transition("crossfade", 0.5))]
    result = stitch_film(clips, Path("film.mp4"), settings=StitchConfig(), encode=EncodeConfig())
    result.method, result.reason   # ("compose", "scene `b` joins with a crossfade (0.5 s)")
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from wanbatch.av.encode import EncodeSettings
from wanbatch.av.ffmpeg import run_ffmpeg
from wanbatch.av.mp4join import ClipTables, join_mp4
from wanbatch.config.schema import StitchConfig
from wanbatch.core.project import Soundtrack
from wanbatch.errors import ConfigError, Issue
from wanbatch.film.clips import (
    ClipInfo,
    FilmClip,
    StitchResult,
    audio_words,
    check_stitch,
    layout,
    num,
    probe_clips,
    probe_unknown,
)

__all__ = ["stitch_film"]

# -- 3. Choosing the method -------------------------------------------------------------------------------


def _reasons_against_copy(
    clips: Sequence[FilmClip], infos: Sequence[ClipInfo], st: StitchConfig, soundtrack: Soundtrack | None
) -> list[str]:
    reasons: list[str] = []
    if soundtrack is not None:
        reasons.append("a soundtrack is mixed under the film")
    if st.fade_in or st.fade_out:
        reasons.append(f"the film fades (fade_in {num(st.fade_in)} s, fade_out {num(st.fade_out)} s)")
    for clip in clips[1:]:
        if clip.transition.type != "cut":
            reasons.append(
                f"scene `{clip.scene_id}` joins with a {clip.transition.type} ({num(clip.transition.duration)} s)"
            )
            break
    titled = [c.scene_id for c in clips if c.title]
    if titled:
        reasons.append(f"scene `{titled[0]}` has a title caption")
    first = infos[0]
    if (st.width and st.width != first.width) or (st.height and st.height != first.height):
        reasons.append(
            f"the film size is set to {st.width or first.width}x{st.height or first.height} "
            f"but the clips are {first.width}x{first.height}"
        )
    if st.fps and abs(st.fps - first.fps) > 1e-3:
        reasons.append(f"the film fps is set to {num(st.fps)} but the clips are {num(first.fps)} fps")
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
        return f"clips differ in fps: {num(a.fps)} " + who.format(num(b.fps))
    if a.audio != b.audio:
        return f"clips differ in audio: {audio_words(a.audio)} " + who.format(audio_words(b.audio))
    return (
        f"clips differ in codec parameters (profile, pixel format or encoder settings) though both are "
        f"{a.video_codec} {a.width}x{a.height}: `{a_id}` vs `{b_id}`; a stream copy could break decoding "
        f"at the join"
    )


# -- 4. The entry point -----------------------------------------------------------------------------------


def stitch_film(
    clips: list[FilmClip],
    out: Path,
    *,
    settings: StitchConfig,
    encode: EncodeSettings,
    soundtrack: Soundtrack | None = None,
    probed: Mapping[Path, ClipInfo] | None = None,
    tables: Mapping[Path, ClipTables | None] | None = None,
) -> StitchResult:
    """Join `clips` (in film order) into `out`, by stream copy when possible, else by composing. `probed`:
    clips already described (`probe_clips`, e.g. as each landed during the run); the others are probed here.
    `tables`: mp4 clips' tables read for the copy (`mp4join.read_tables`) as they landed.

    Raises ConfigError for invalid `settings`, for `mode: copy` when a stream copy is impossible (with
    the reason) and for transitions that do not fit their clips; RenderError when a clip is unreadable.
    The film is written beside `out` and moved into place when whole.
    """
    t0 = time.perf_counter()
    # 1. Check the settings and read the clips' headers
    st = check_stitch(settings)
    if not clips:
        raise ValueError("stitch_film needs at least one clip")
    infos = probe_unknown([c.path for c in clips], probed or {})
    if len({i.copy_key[0] for i in infos}) > 1:  # some read from mp4 headers, some by ffmpeg: all alike instead
        infos = probe_clips([c.path for c in clips])

    # 2. Choose the method
    against = _reasons_against_copy(clips, infos, st, soundtrack)
    if st.mode == "copy" and against:
        raise ConfigError(
            [
                Issue(
                    None,
                    "stitch.mode",
                    "copy",
                    "`auto` or `compose`: the clips cannot be joined by stream copy because " + "; ".join(against),
                )
            ]
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.stem}.part{out.suffix}")

    # 3. Make the film
    try:
        if st.mode == "compose" or against:
            lay = layout([i.duration for i in infos], [c.transition for c in clips], [c.scene_id for c in clips])
            if st.fade_in + st.fade_out > lay.duration + 1e-6:
                raise ConfigError(
                    [
                        Issue(
                            None,
                            "stitch.fade_in",
                            st.fade_in,
                            f"fade_in + fade_out at most the "
                            f"film's {num(lay.duration)} s (fade_out is {num(st.fade_out)} s)",
                        )
                    ]
                )
            # imported here: composing needs numpy (0.15 s to import, on the path from the last clip to the
            # film) and moviepy, which a stream-copied film does not
            from wanbatch.film import mix

            mix.compose_film(clips, infos, lay, part, st, encode, soundtrack)
            method = "compose"
            reason = "; ".join(against) if against else "`stitch.mode` is compose"
            duration = lay.duration
        else:
            _join_copy([c.path for c in clips], part, tables)
            method = "copy"
            reason = (
                f"all {len(clips)} clips are {infos[0].describe()} and every transition is a cut"
                if len(clips) > 1
                else f"a single clip ({infos[0].describe()}), nothing to compose"
            )
            duration = sum(i.container_duration for i in infos)
        os.replace(part, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return StitchResult(out, method, duration, time.perf_counter() - t0, reason)


# -- 5. copy: the clips' sample tables joined, else ffmpeg's concat demuxer ----------------------------------

# what `join_mp4` writes: an ISO-BMFF file, so only a film named as one
_ISO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov"})


def _join_copy(paths: Sequence[Path], out: Path, tables: Mapping[Path, ClipTables | None] | None = None) -> None:
    """Join mp4 clips by their sample tables (no pass over the packets, and each clip's audio edits kept);
    anything that cannot be joined exactly that way goes through ffmpeg's concat demuxer."""
    if out.suffix.lower() in _ISO_SUFFIXES and join_mp4(paths, out, tables):
        return
    _concat_copy(paths, out)


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
