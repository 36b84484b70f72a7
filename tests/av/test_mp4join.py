"""Joining mp4 clips by their sample tables: the film shows every clip's frames and plays its sound, in order,
with nothing re-encoded; clips it cannot join exactly are left to ffmpeg, with nothing written."""

from __future__ import annotations

import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

import wanbatch.av.mp4join as mp4join
from wanbatch.av.encode import write_clip
from wanbatch.av.ffmpeg import ffmpeg_exe, read_frames
from wanbatch.av.mp4 import boxes, file_boxes, find, mp4_whole, read_moov, read_movie
from wanbatch.av.mp4join import join_mp4
from wanbatch.config.schema import EncodeConfig

RATE = 48000
AAC_FRAME = 1024  # samples an AAC-LC packet decodes to


def tone_clip(
    path: Path,
    *,
    freq: float,
    seconds: float,
    preset: str = "ultrafast",
    size: tuple[int, int] = (64, 48),
    audio: bool = True,
) -> Path:
    """A clip with a bar moving across a colour and a sine of `freq` Hz (or no sound): real, distinct picture and
    sound in every clip, encoded the way wanbatch's backends encode."""
    w, h = size
    n = round(seconds * 16)
    frames = []
    for i in range(n):
        f = np.empty((h, w, 3), np.uint8)
        f[:] = (int(freq) % 200, 90, 160)
        f[:, (i * 3) % (w - 4) : (i * 3) % (w - 4) + 4] = 255
        frames.append(f)
    wav = None
    if audio:
        t = np.arange(round(seconds * RATE)) / RATE
        wav = path.with_suffix(".wav")
        with wave.open(str(wav), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes((0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2").tobytes())
    write_clip(frames, path, fps=16, settings=EncodeConfig(preset=preset, crf=30), audio=wav, silent_audio=False)
    return path


def frame_bytes(path: Path) -> list[bytes]:
    return [f.tobytes() for f in read_frames(path)]


def decode_audio(path: Path) -> np.ndarray:
    """The sound as ffmpeg decodes it, mono float samples."""
    out = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "-ac", "1", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, np.float32)


def assert_sound_in_turn(film: Path, clips: list[Path]) -> None:
    """The film's sound is each clip's sound, sample for sample (to AAC's rounding), in order. ffmpeg plays the
    rest of each clip's last AAC frame, which the film's edit list (like the clip's own) ends before: a clip may
    start up to one frame late, never more, and never with anything of its own missing."""
    heard = decode_audio(film)
    at = 0
    for clip in clips:
        own = decode_audio(clip)
        head = own[:2048]
        lags = [float(np.abs(heard[at + lag : at + lag + len(head)] - head).max()) for lag in range(AAC_FRAME)]
        lag = int(np.argmin(lags))
        assert lags[lag] < 1e-3, f"{clip.name} is not heard within a frame of where it should start"
        got = heard[at + lag : at + lag + len(own)]
        assert len(got) == len(own), f"{clip.name} is cut short in the film"
        assert float(np.abs(got - own).max()) < 1e-3, f"{clip.name} sounds different in the film"
        at += lag + len(own)
    assert len(heard) - at < AAC_FRAME


def elst(path: Path, handler: bytes) -> list[tuple[int, int]]:
    """The (duration, media time) edits of the track with `handler`."""
    moov = read_moov(path)
    assert moov is not None
    for trak in boxes(moov, 0, len(moov)):
        hdlr = find(moov, trak.payload, trak.end, b"mdia", b"hdlr")
        if trak.kind == b"trak" and hdlr is not None and moov[hdlr.payload + 8 : hdlr.payload + 12] == handler:
            box = find(moov, trak.payload, trak.end, b"edts", b"elst")
            assert box is not None and moov[box.payload] == 0
            n = struct.unpack_from(">I", moov, box.payload + 4)[0]
            return [struct.unpack_from(">Ii", moov, box.payload + 8 + 12 * i) for i in range(n)]
    raise AssertionError(f"no {handler!r} track")


@pytest.mark.parametrize("preset", ["ultrafast", "medium"])  # medium: B-frames, so a shifted picture and ctts
def test_the_film_shows_and_plays_each_clip_in_turn(tmp_path, preset):
    clips = [
        tone_clip(tmp_path / f"c{k}.mp4", freq=220 * (k + 1), seconds=s, preset=preset)
        for k, s in enumerate([2, 1.5, 2.25])
    ]
    film = tmp_path / "film.mp4"
    assert join_mp4(clips, film)

    assert frame_bytes(film) == [f for c in clips for f in frame_bytes(c)]
    assert_sound_in_turn(film, clips)
    movies = [read_movie(c) for c in clips]
    movie = read_movie(film)
    assert movie is not None and movie.video is not None
    assert movie.duration == pytest.approx(sum(m.duration for m in movies if m), abs=1e-6)
    assert movie.video.frames == sum(m.video.frames for m in movies if m and m.video)
    # the picture runs on from clip to clip (one edit); the sound skips each clip's priming (an edit a clip)
    assert len(elst(film, b"vide")) == 1
    assert len(elst(film, b"soun")) == len(clips)
    # the media after the moov: the film starts playing before it has all downloaded
    with open(film, "rb") as f:
        assert [b.kind for b in file_boxes(f)] == [b"ftyp", b"moov", b"mdat"]
    assert mp4_whole(film)


def test_clips_without_sound_join(tmp_path):
    clips = [tone_clip(tmp_path / f"c{k}.mp4", freq=300 + k, seconds=1, audio=False) for k in range(3)]
    film = tmp_path / "film.mp4"
    assert join_mp4(clips, film)
    assert frame_bytes(film) == [f for c in clips for f in frame_bytes(c)]
    movie = read_movie(film)
    assert movie is not None and movie.audio is None and movie.duration == pytest.approx(3.0)


def test_tables_read_as_clips_land_are_joined_without_reading_again_unless_the_file_changed(tmp_path, monkeypatch):
    """A run reads each clip's tables as it lands (`read_tables`); the join after the last clip takes them, and
    reads a clip again only where its file is no longer the one read (here: another clip written in its place)."""
    clips = [tone_clip(tmp_path / f"c{k}.mp4", freq=330 * (k + 1), seconds=1) for k in range(3)]
    read = {c: mp4join.read_tables(c) for c in clips}
    assert all(t is not None for t in read.values())
    reads: list[Path] = []
    real = mp4join._read_clip
    monkeypatch.setattr(mp4join, "_read_clip", lambda path: reads.append(path) or real(path))

    film = tmp_path / "film.mp4"
    assert join_mp4(clips, film, read)
    assert reads == []
    assert frame_bytes(film) == [f for c in clips for f in frame_bytes(c)]

    replaced = tone_clip(tmp_path / "other.mp4", freq=440, seconds=1.5)
    replaced.replace(clips[1])  # a new file at the path (as a repaired blob is linked in anew)
    again = tmp_path / "again.mp4"
    assert join_mp4(clips, again, read)
    assert reads == [clips[1]]
    assert frame_bytes(again) == [f for c in clips for f in frame_bytes(c)]
    assert_sound_in_turn(again, clips)


def test_tables_of_a_clip_that_cannot_be_joined_read_as_none(tmp_path):
    mkv = tmp_path / "c.mkv"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=0.5", "-c:v", "libx264", str(mkv)],
        check=True,
    )
    assert mp4join.read_tables(mkv) is None
    assert mp4join.read_tables(tmp_path / "missing.mp4") is None


def test_a_film_past_4_gib_takes_64_bit_offsets(tmp_path, monkeypatch):
    """Past 4 GiB of media, chunk offsets need co64 and the mdat a 64-bit size; the limit is lowered so that
    small clips cross it."""
    monkeypatch.setattr(mp4join, "_OFFSET_MAX", 1000)
    clips = [tone_clip(tmp_path / f"c{k}.mp4", freq=440 * (k + 1), seconds=1) for k in range(2)]
    film = tmp_path / "film.mp4"
    assert join_mp4(clips, film)
    moov = read_moov(film)
    assert moov is not None
    trak = next(b for b in boxes(moov, 0, len(moov)) if b.kind == b"trak")
    assert find(moov, trak.payload, trak.end, b"mdia", b"minf", b"stbl", b"co64") is not None
    assert find(moov, trak.payload, trak.end, b"mdia", b"minf", b"stbl", b"stco") is None
    data = film.read_bytes()
    mdat = data.index(b"mdat") - 4
    assert struct.unpack_from(">I", data, mdat)[0] == 1  # the size follows as 64 bits
    assert struct.unpack_from(">Q", data, mdat + 8)[0] == len(data) - mdat
    assert frame_bytes(film) == [f for c in clips for f in frame_bytes(c)]
    assert_sound_in_turn(film, clips)


def _fragmented(src: Path, dest: Path) -> Path:
    args = [ffmpeg_exe(), "-v", "error", "-i", str(src), "-c", "copy"]
    subprocess.run([*args, "-movflags", "frag_keyframe+empty_moov", str(dest)], check=True)
    return dest


def _mkv(src: Path, dest: Path) -> Path:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(src), "-c", "copy", str(dest)], check=True)
    return dest


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(lambda d, c: tone_clip(d / "b.mp4", freq=330, seconds=1, size=(48, 48)), id="another size"),
        pytest.param(lambda d, c: tone_clip(d / "b.mp4", freq=330, seconds=1, audio=False), id="no sound"),
        pytest.param(lambda d, c: _fragmented(c, d / "b.mp4"), id="fragmented"),
        pytest.param(lambda d, c: _mkv(c, d / "b.mkv"), id="not mp4"),
        pytest.param(lambda d, c: d / "missing.mp4", id="missing"),
    ],
)
def test_clips_it_cannot_join_exactly_are_declined_with_nothing_written(tmp_path, second):
    first = tone_clip(tmp_path / "a.mp4", freq=220, seconds=1)
    film = tmp_path / "film.mp4"
    assert not join_mp4([first, second(tmp_path, first)], film)
    assert not film.exists()


def test_a_clip_whose_header_lies_about_its_media_is_declined(tmp_path):
    """A chunk offset past the end of the media (a damaged or cut-off file) is not copied blindly."""
    clip = tone_clip(tmp_path / "a.mp4", freq=220, seconds=1)
    data = bytearray(clip.read_bytes())
    at = data.index(b"stco") + 12  # version/flags, count, then the first offset
    struct.pack_into(">I", data, at, len(data) + 100)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    film = tmp_path / "film.mp4"
    assert not join_mp4([clip, bad], film)
    assert not film.exists()


def test_a_film_longer_than_32_bit_durations_takes_version_1_headers(tmp_path, monkeypatch):
    """At ffmpeg's movie time scale (6144000) a 32-bit duration ends at 11.6 minutes: a longer film's movie and
    track headers and edit lists widen to 64 bits. The limit is lowered so that short clips cross it."""
    monkeypatch.setattr(mp4join, "_DURATION_MAX", 10_000_000)  # 1.6 s at 6144000
    clips = [tone_clip(tmp_path / f"c{k}.mp4", freq=220 * (k + 1), seconds=1) for k in range(2)]
    film = tmp_path / "film.mp4"
    assert join_mp4(clips, film)
    moov = read_moov(film)
    assert moov is not None
    mvhd = find(moov, 0, len(moov), b"mvhd")
    assert mvhd is not None and moov[mvhd.payload] == 1
    traks = [b for b in boxes(moov, 0, len(moov)) if b.kind == b"trak"]
    for trak in traks:  # each track lasts the film's 2 s
        tkhd = find(moov, trak.payload, trak.end, b"tkhd")
        assert tkhd is not None and moov[tkhd.payload] == 1
    video_edits = find(moov, traks[0].payload, traks[0].end, b"edts", b"elst")  # one edit of 2 s; sound: 1 s each
    assert video_edits is not None and moov[video_edits.payload] == 1
    movie = read_movie(film)
    assert movie is not None and movie.duration == pytest.approx(2.0)
    assert frame_bytes(film) == [f for c in clips for f in frame_bytes(c)]
    assert_sound_in_turn(film, clips)


def test_clips_whose_pictures_would_need_an_edit_each_are_left_to_ffmpeg(tmp_path):
    """A clip whose picture starts later in its media than the others' (another composition shift) would need
    an edit of its own in the film's video track, which not every player honours: declined."""
    first = tone_clip(tmp_path / "a.mp4", freq=220, seconds=1)
    data = bytearray(tone_clip(tmp_path / "b.mp4", freq=330, seconds=1).read_bytes())
    at = data.index(b"elst") + 4 + 4 + 4 + 4  # version/flags, entry count, the first edit's duration: its media time
    assert struct.unpack_from(">i", data, at)[0] == 0  # the video track's edit comes first
    struct.pack_into(">i", data, at, 1024)
    shifted = tmp_path / "shifted.mp4"
    shifted.write_bytes(bytes(data))
    film = tmp_path / "film.mp4"
    assert join_mp4([first, first], film)  # alike: one edit
    film.unlink()
    assert not join_mp4([first, shifted], film)
    assert not film.exists()


def _sample_groups(path: Path) -> list[tuple[int, int]]:
    moov = read_moov(path)
    assert moov is not None
    at = moov.index(b"sbgp") + 4  # the box's payload: version/flags, grouping type, entry count, then the runs
    n = struct.unpack_from(">I", moov, at + 8)[0]
    return [struct.unpack_from(">II", moov, at + 12 + 8 * i) for i in range(n)]


def test_samples_a_clip_leaves_out_of_its_sample_groups_stay_out_in_the_film(tmp_path):
    """AAC's `roll` group marks every sample; a clip whose runs stop short leaves its last samples in no group,
    and the next clip's runs must not slide onto them."""
    clips = [tone_clip(tmp_path / f"c{k}.mp4", freq=220 * (k + 1), seconds=1) for k in range(2)]
    (count, group), *_ = _sample_groups(clips[0])
    data = bytearray(clips[0].read_bytes())
    at = data.index(b"sbgp") + 4 + 12  # the first run's sample count
    struct.pack_into(">I", data, at, count - 5)
    clips[0].write_bytes(bytes(data))
    film = tmp_path / "film.mp4"
    assert join_mp4(clips, film)
    assert _sample_groups(film) == [(count - 5, group), (5, 0), (count, group)]


def test_clips_whose_sound_stops_before_their_picture_are_left_to_ffmpeg(tmp_path):
    """Sound shorter than the picture leaves a gap in the film's sound track at the joint (an empty edit), which
    ffmpeg's demuxer fills with the sound before it instead of silence: declined."""
    clips = []
    for k in range(2):
        picture = tone_clip(tmp_path / f"v{k}.mp4", freq=220 * (k + 1), seconds=1, audio=False)
        t = np.arange(round(0.8 * RATE)) / RATE
        wav = tmp_path / f"a{k}.wav"
        with wave.open(str(wav), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes())
        clip = tmp_path / f"c{k}.mp4"
        args = ["-i", str(picture), "-i", str(wav), "-c:v", "copy", "-c:a", "aac", str(clip)]
        subprocess.run([ffmpeg_exe(), "-v", "error", *args], check=True)
        clips.append(clip)
    movie = read_movie(clips[0])
    assert movie is not None and movie.duration == pytest.approx(1.0)  # the picture's length; the sound's is 0.8 s
    film = tmp_path / "film.mp4"
    assert not join_mp4(clips, film)
    assert not film.exists()
