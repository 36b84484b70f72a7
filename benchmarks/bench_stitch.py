"""Stitching: wanbatch's film from N compatible clips against a bare ffmpeg concat and moviepy.

    python benchmarks/bench_stitch.py [--quick]

N clips (6 x 5 s at 720p; --quick: 3 x 2 s at 480p) are written once with `wanbatch.av.encode.write_clip`
(the same layout every backend writes: H.264 + a silent AAC track). Then, in one run:

- copy: `stitch_film` (mode auto, which picks the stream copy; for these mp4 clips, the join of their sample
  tables) vs a bare `ffmpeg -f concat -safe 0 -i list.txt -c copy`, interleaved, median of several.
  Target: ratio <= 1.5.
- re-encode: moviepy's `concatenate_videoclips` + `write_videofile` with the same codec settings as
  wanbatch's `encode` group, vs wanbatch's compose path (mode compose, crossfades between the clips),
  each as seconds of wall per second of film.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import figure, median, parse_args, print_result, result

from wanbatch.av.encode import EncodeSettings, write_clip
from wanbatch.av.ffmpeg import ffmpeg_exe, probe
from wanbatch.config.schema import EncodeConfig, StitchConfig
from wanbatch.core.scene import Transition

TARGET_COPY = 1.5
FPS = 16  # Wan's frame rate


def _frames(k: int, w: int, h: int, n: int) -> Iterator[np.ndarray]:
    """A moving gradient with a bright square: cheap to make, compresses like real footage (not noise)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / w * 255, y / h * 255, np.full_like(x, 40.0 * k % 255)], axis=-1)
    for i in range(n):
        f = np.roll(base, shift=i * 4, axis=1).astype(np.uint8)
        s = h // 6
        cx = (i * 7 + k * 50) % (w - s)
        f[h // 2 - s // 2 : h // 2 + s // 2, cx : cx + s] = 255
        yield f


def make_clips(folder: Path, n: int, seconds: float, w: int, h: int, encode: EncodeSettings) -> list[Path]:
    paths = []
    for k in range(n):
        p = folder / f"clip{k:02d}.mp4"
        write_clip(_frames(k, w, h, round(seconds * FPS)), p, fps=FPS, settings=encode)
        paths.append(p)
    return paths


def bare_concat(paths: list[Path], out: Path) -> float:
    t0 = time.perf_counter()
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in paths))
    subprocess.run(
        [
            ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(listing),
            "-c",
            "copy",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def wanbatch_stitch(
    paths: list[Path], out: Path, mode: str, transition: Transition, encode: EncodeSettings
) -> tuple[float, Any]:
    from wanbatch.film.clips import FilmClip
    from wanbatch.film.stitch import stitch_film

    clips = [FilmClip(p, f"s{k}", transition=transition if k else Transition()) for k, p in enumerate(paths)]
    t0 = time.perf_counter()
    res = stitch_film(clips, out, settings=StitchConfig(mode=mode), encode=encode)
    return time.perf_counter() - t0, res


def moviepy_reencode(paths: list[Path], out: Path, encode: EncodeSettings) -> float:
    """What a script without wanbatch would do: load, concatenate, write (same codec settings)."""
    from moviepy import VideoFileClip, concatenate_videoclips

    t0 = time.perf_counter()
    clips = [VideoFileClip(str(p)) for p in paths]
    film = concatenate_videoclips(clips)
    film.write_videofile(
        str(out),
        fps=FPS,
        codec=encode.codec,
        preset=encode.preset,
        audio_codec=encode.audio_codec,
        audio_bitrate=encode.audio_bitrate,
        audio_fps=encode.audio_rate,
        ffmpeg_params=["-crf", str(encode.crf)],
        logger=None,
    )
    film.close()
    for c in clips:
        c.close()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv, __doc__.splitlines()[0])
    n, seconds, (w, h), reps = (3, 2.0, (832, 480), 3) if args.quick else (6, 5.0, (1280, 720), 7)
    encode = EncodeConfig()  # the encode group's defaults: what every clip and composed film gets
    notes = []
    try:
        import wanbatch.film.stitch  # noqa: F401
    except ImportError as exc:
        from _common import skipped

        return skipped("stitch", "5. Stitching", f"wanbatch.film.stitch cannot be imported ({exc})")
    with tempfile.TemporaryDirectory(prefix="wanbatch-bench-stitch-") as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        # The clips are made with a faster preset (only their making is faster; the layout is the same).
        paths = make_clips(tmp, n, seconds, w, h, EncodeConfig(preset="veryfast"))
        made_s = time.perf_counter() - t0
        film_s = n * seconds

        # 1. Stream copy: wanbatch vs bare ffmpeg, interleaved
        ours, bare, method, reason = [], [], "", ""
        for i in range(reps):
            s, res = wanbatch_stitch(paths, tmp / f"film-copy{i}.mp4", "auto", Transition(), encode)
            ours.append(s)
            method, reason = res.method, res.reason
            bare.append(bare_concat(paths, tmp / f"film-bare{i}.mp4"))
        d_ours = probe(tmp / "film-copy0.mp4").duration or 0.0
        d_bare = probe(tmp / "film-bare0.mp4").duration or 0.0
        copy_ratio = median(ours) / median(bare)

        # 2. Re-encode: moviepy vs wanbatch's compose path (crossfades: the reason to compose). Both use
        # moviepy; its import is timed once here and left out of both figures.
        t0 = time.perf_counter()
        import moviepy  # noqa: F401

        import_s = time.perf_counter() - t0
        mp_s = moviepy_reencode(paths, tmp / "film-moviepy.mp4", encode)
        d_mp = probe(tmp / "film-moviepy.mp4").duration or 0.0
        xf = Transition("crossfade", 0.5)
        comp_s, comp = wanbatch_stitch(paths, tmp / "film-compose.mp4", "compose", xf, encode)
        d_comp = comp.duration

    figures = [
        figure(f"wanbatch stitch_film ({method}), {n} clips x {seconds:g} s at {h}p", f"{median(ours) * 1e3:.0f} ms"),
        figure("bare ffmpeg -f concat -c copy", f"{median(bare) * 1e3:.0f} ms"),
        figure(
            "wanbatch copy / bare ffmpeg",
            f"{copy_ratio:.2f}",
            f"<= {TARGET_COPY}",
            copy_ratio <= TARGET_COPY and method == "copy",
        ),
        figure(
            "moviepy concatenate_videoclips + write_videofile", f"{mp_s:.1f} s ({mp_s / film_s:.2f} s per s of film)"
        ),
        figure("wanbatch copy / moviepy re-encode", f"{median(ours) / mp_s:.3f}"),
        figure(
            "wanbatch compose (crossfades), per second of film",
            f"{comp_s / d_comp:.2f} s/s ({comp_s:.1f} s for {d_comp:.1f} s)",
        ),
        figure("wanbatch compose / moviepy re-encode, per second of film", f"{(comp_s / d_comp) / (mp_s / d_mp):.2f}"),
        figure("import moviepy (once per process; in neither figure above)", f"{import_s * 1e3:.0f} ms"),
    ]
    if method != "copy":
        notes.append(f"stitch_film did not take the copy path: {reason}")
    notes.append(
        f"Film lengths: copy {d_ours:.2f} s, bare {d_bare:.2f} s, moviepy {d_mp:.2f} s, compose "
        f"{d_comp:.2f} s. Copy timings: median of {reps}, wanbatch and bare interleaved; re-encodes: one "
        f"run each, both with the encode group's settings ({encode.codec} crf {encode.crf} preset "
        f"{encode.preset}, {encode.audio_codec} {encode.audio_bitrate})."
    )
    notes.append(f"Making the {n} clips took {made_s:.1f} s (preset veryfast; not part of any figure).")
    return result(
        "stitch",
        "5. Stitching",
        figures,
        notes=notes,
        raw={
            "moviepy_import_s": import_s,
            "ours_s": ours,
            "bare_s": bare,
            "moviepy_s": mp_s,
            "compose_s": comp_s,
            "film_s": film_s,
            "method": method,
            "reason": reason,
        },
        quick=args.quick,
    )


if __name__ == "__main__":
    print_result(main())
