"""The ffmpeg binary (shipped by imageio-ffmpeg, so no system ffmpeg is needed) and a small prober.

imageio-ffmpeg ships ffmpeg but not ffprobe, so probing parses `ffmpeg -i`'s stream summary.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


@functools.cache
def ffmpeg_exe() -> str:
    """imageio-ffmpeg's binary, found as `imageio_ffmpeg.get_ffmpeg_exe` finds it (IMAGEIO_FFMPEG_EXE, then the
    binary it ships, then others). Its lookup starts the shipped binary once to see it run: an ffmpeg start costs
    ~20 ms of CPU, and every run of wanbatch starts it anyway (`ffmpeg_version`), so a shipped binary that is an
    executable file is taken without that start; a broken one then fails loudly where it is first used."""
    import imageio_ffmpeg

    if not os.environ.get("IMAGEIO_FFMPEG_EXE"):
        with contextlib.suppress(Exception):  # imageio-ffmpeg's layout moved: its own lookup answers
            from imageio_ffmpeg import _definitions, _utils

            shipped = _definitions.FNAME_PER_PLATFORM.get(_definitions.get_platform(), "")
            exe = os.path.join(_utils._get_bin_dir(), shipped)
            if shipped and os.path.isfile(exe) and os.access(exe, os.X_OK):
                return exe
    return str(imageio_ffmpeg.get_ffmpeg_exe())


@functools.cache
def ffmpeg_version() -> str:
    """The version ffmpeg reports (`n9.0.2-17-g2a571b6068-20260930`), or `unknown` if it says none."""
    proc = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, timeout=60)
    m = re.match(r"ffmpeg version (\S+)", proc.stdout)
    return m.group(1) if m else "unknown"


def run_ffmpeg(args: list[str], *, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg quietly; raise with its last lines of stderr when it fails."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", *args]
    # A terminal's Ctrl-C signals its whole foreground process group. An ffmpeg of ours must not die of it in
    # the middle of a job's encode or a download's check (the job would be "failed", a paid render lost), so
    # it runs in a session of its own: subprocess.run still kills it when the thread waiting on it is
    # interrupted, and a job's thread finishes its step, then sees the run's cancel.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {tail}")
    return proc


@dataclass(frozen=True)
class Probe:
    """What a media file holds. Fields are None where the file has no such stream."""

    duration: float | None
    video_codec: str | None = None
    pix_fmt: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: str | None = None

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+.*?: Video: (\w+)[^,]*(?:\([^)]*\))?, ([\w]+)?[^,]*?(?:\([^)]*\))?, (\d+)x(\d+)")
_FPS = re.compile(r"([\d.]+) fps")
_TBR = re.compile(r"([\d.]+)k? tbr")
_AUDIO = re.compile(r"Stream #\S+.*?: Audio: (\w+)[^,]*, (\d+) Hz, ([^,]+)")


def probe(path: str | Path, *, timeout: float = 60) -> Probe:
    """Probe a local media file. Raises ValueError if ffmpeg cannot read it as media."""
    proc = subprocess.run(  # in a session of its own, as run_ffmpeg's
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )
    return parse_probe(proc.stderr)


def parse_probe(err: str) -> Probe:
    """Read ffmpeg's stream summary of one input (what `ffmpeg -i FILE` prints). Raises ValueError when
    it shows no stream. Shared by `probe` and the batched probe of downloads, so both accept the same files."""
    m = _DURATION.search(err)
    if "Stream #" not in err:
        last = err.strip().splitlines()[-1] if err.strip() else "no output"
        raise ValueError(f"not a readable media file: {last}")
    duration = None
    if m:
        h, mi, s = m.groups()
        duration = int(h) * 3600 + int(mi) * 60 + float(s)
    fields: dict[str, object] = {"duration": duration}
    for line in err.splitlines():
        if "Video:" in line and "video_codec" not in fields:
            vm = _VIDEO.search(line)
            if vm:
                fields.update(
                    video_codec=vm.group(1),
                    pix_fmt=vm.group(2),
                    width=int(vm.group(3)),
                    height=int(vm.group(4)),
                )
            fm = _FPS.search(line) or _TBR.search(line)
            if fm:
                fields["fps"] = float(fm.group(1))
        elif "Audio:" in line and "audio_codec" not in fields:
            am = _AUDIO.search(line)
            if am:
                fields.update(audio_codec=am.group(1), sample_rate=int(am.group(2)), channels=am.group(3).strip())
    return Probe(**fields)  # type: ignore[arg-type]


def last_frame(video: str | Path, out_png: str | Path) -> Path:
    """Decode the exact last frame of `video` into a lossless PNG (for `chain_from`)."""
    # -sseof seeks near the end; -update 1 keeps overwriting one image, so the last decoded frame wins.
    run_ffmpeg(["-sseof", "-1", "-i", str(video), "-update", "1", "-frames:v", "1000", str(out_png)])
    return Path(out_png)


def read_frames(video: str | Path) -> list:
    """All frames of a video as RGB uint8 arrays (tests and tools; not for long clips)."""
    import imageio_ffmpeg
    import numpy as np

    gen = imageio_ffmpeg.read_frames(str(video), pix_fmt="rgb24")
    meta = next(gen)
    w, h = meta["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen]
