"""The mp4 header reader: boxes walked as their sizes say (64-bit and to-the-end sizes too), a cut-off file
shows as a last box past the end, and a real clip's tracks read as ffmpeg wrote them."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np

from wanbatch.av.encode import write_clip
from wanbatch.av.mp4 import boxes, file_boxes, find, read_moov, read_movie
from wanbatch.config.schema import EncodeConfig


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def clip(path: Path, *, audio: bool) -> Path:
    frames = [np.full((96, 160, 3), 15 * i, np.uint8) for i in range(16)]
    return write_clip(frames, path, fps=16, settings=EncodeConfig(preset="ultrafast"), silent_audio=audio)


def test_boxes_and_find_walk_nested_boxes():
    buf = box(b"free", b"xy") + box(b"trak", box(b"mdia", box(b"hdlr", b"1234") + box(b"mdhd", b"5678")))
    assert [(b.kind, b.start, b.payload, b.end) for b in boxes(buf, 0, len(buf))] == [
        (b"free", 0, 8, 10),
        (b"trak", 10, 18, len(buf)),
    ]
    mdhd = find(buf, 0, len(buf), b"trak", b"mdia", b"mdhd")
    assert mdhd is not None and buf[mdhd.payload : mdhd.end] == b"5678"
    assert find(buf, 0, len(buf), b"trak", b"minf") is None


def test_boxes_stop_at_a_box_that_overruns_its_container():
    buf = box(b"free", b"xy") + struct.pack(">I4s", 100, b"trak")
    assert [b.kind for b in boxes(buf, 0, len(buf))] == [b"free"]


def test_file_boxes_follow_64_bit_and_to_the_end_sizes():
    data = (
        box(b"ftyp", b"isom") + struct.pack(">I4sQ", 1, b"mdat", 20) + b"abcd" + struct.pack(">I4s", 0, b"free") + b"z"
    )
    found = [(b.kind, b.payload, b.end) for b in file_boxes(io.BytesIO(data))]
    assert found == [(b"ftyp", 8, 12), (b"mdat", 28, 32), (b"free", 40, len(data))]


def test_a_cut_off_file_shows_as_a_last_box_past_its_end(tmp_path):
    data = clip(tmp_path / "a.mp4", audio=True).read_bytes()
    assert list(file_boxes(io.BytesIO(data)))[-1].end == len(data)
    cut = data[: len(data) - 100]
    assert list(file_boxes(io.BytesIO(cut)))[-1].end > len(cut)


def test_read_movie_describes_the_tracks_ffmpeg_wrote(tmp_path):
    movie = read_movie(clip(tmp_path / "a.mp4", audio=True))
    assert movie is not None and movie.video is not None and movie.audio is not None
    v, a = movie.video, movie.audio
    assert (v.codec, v.width, v.height, v.fps, v.duration) == ("h264", 160, 96, 16.0, 1.0)
    assert (a.codec, a.rate, a.channels) == ("aac", EncodeConfig().audio_rate, 2)
    assert abs(movie.duration - 1.0) < 0.1

    silent_path = clip(tmp_path / "b.mp4", audio=False)
    silent = read_movie(silent_path)
    assert silent is not None and silent.audio is None and silent.video is not None
    assert silent.video.signature == v.signature  # same format: a stream copy could join them
    # the sample tables: 16 frames, and (no audio) the video's samples fill the mdat box to its last byte
    with open(silent_path, "rb") as f:
        mdat = next(b for b in file_boxes(f) if b.kind == b"mdat")
    assert (v.frames, silent.video.frames) == (16, 16) and silent.video.data_end == mdat.end
    assert 0 < v.data_end <= (tmp_path / "a.mp4").stat().st_size  # audio samples are in the mdat too


def test_not_an_mp4_reads_as_none(tmp_path):
    other = tmp_path / "a.webm"
    other.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(100))
    assert read_moov(other) is None and read_movie(other) is None
