"""A small reader of ISO-BMFF (mp4/mov) headers: the boxes a file is made of, its `moov` box, and what its
first video and audio tracks are.

An ISO-BMFF file is a run of boxes. Each box starts with a 32-bit big-endian size (of the whole box, header
included) and a four-character type; size 1 means a 64-bit size follows the type, size 0 that the box runs
to the end of whatever holds it. Container boxes (`moov`, `trak`, `mdia`, ...) hold nothing but boxes.
Only headers are read: `moov` is a few kilobytes however long the clip, and the media (`mdat`) is skipped.

Example::

    movie = read_movie(Path("clip.mp4"))   # None when it is not an mp4 this reader understands
    movie.video.codec, movie.video.fps     # ("h264", 16.0)
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "VIDEO_CODECS",
    "AudioTrack",
    "Box",
    "Movie",
    "VideoTrack",
    "boxes",
    "data_end",
    "file_boxes",
    "find",
    "mp4_whole",
    "read_esds",
    "read_moov",
    "read_movie",
    "time_box",
]

# ffmpeg's names for the sample entry types, so a clip reads the same whether parsed here or by ffprobe
_CODECS = {
    b"avc1": "h264",
    b"avc3": "h264",
    b"hvc1": "hevc",
    b"hev1": "hevc",
    b"av01": "av1",
    b"vp09": "vp9",
    b"mp4v": "mpeg4",
    b"mp4a": "aac",
    b"Opus": "opus",
    b"fLaC": "flac",
    b".mp3": "mp3",
    b"ac-3": "ac3",
}
# the video codecs of _CODECS: a track in one of these is a stream ffmpeg decodes
VIDEO_CODECS = frozenset({"h264", "hevc", "av1", "vp9", "mpeg4"})
_AUDIO_OTI = {0x40: "aac", 0x66: "aac", 0x67: "aac", 0x68: "aac", 0x69: "mp3", 0x6B: "mp3"}
_CONFIG_BOXES = (b"avcC", b"hvcC", b"av1C", b"vpcC", b"esds", b"dOps", b"dfLa", b"pasp", b"colr")
# what a file's first box may be: anything else is not ISO-BMFF
_FIRST_BOXES = (b"ftyp", b"moov", b"wide", b"free", b"mdat", b"skip")


# -- Boxes ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """One box: its type and where it lies, as byte offsets into the file or buffer walked."""

    kind: bytes  # the four-character type, e.g. b"moov"
    start: int  # its first byte (the size field)
    payload: int  # the first byte after its header (8 bytes long, 16 with a 64-bit size)
    end: int  # one past its last byte, as its size says: in a file, past the end when the box is cut short


def _header(data: bytes, at: int, room: int) -> tuple[bytes, int, int]:
    """(type, header length, size) of the box whose header is at `data[at:]`; `room` is what is left of
    its container from `at` on, all of which a size-0 box fills. Raises struct.error when `data` ends
    inside the header."""
    size, kind = struct.unpack_from(">I4s", data, at)
    if size == 1:
        return kind, 16, struct.unpack_from(">Q", data, at + 8)[0]
    return kind, 8, room if size == 0 else size


def boxes(buf: bytes, start: int, end: int) -> Iterator[Box]:
    """The boxes in `buf[start:end]`, in order; the walk stops at a box that is invalid or overruns `end`.

    Example: the children of a box `b` are `boxes(buf, b.payload, b.end)`.
    """
    i = start
    while i + 8 <= end:
        kind, header, size = _header(buf, i, end - i)
        if size < header or i + size > end:
            return
        yield Box(kind, i, i + header, i + size)
        i += size


def file_boxes(f: BinaryIO) -> Iterator[Box]:
    """The top-level boxes of an open binary file, read by seeking from header to header (the media is
    never read). The walk stops at an invalid header or at one cut off by the end of the file; the last box
    yielded may end past the end of the file, when the file is cut short.

    Example, whether a file's boxes run exactly to its end (a cut-off download's do not)::

        with open(path, "rb") as f:
            end = 0
            for box in file_boxes(f):
                end = box.end
        whole = end == path.stat().st_size
    """
    size = f.seek(0, os.SEEK_END)
    pos = 0
    while pos + 8 <= size:
        f.seek(pos)
        try:
            kind, header, box_size = _header(f.read(16), 0, size - pos)
        except struct.error:  # a 64-bit size cut off by the end of the file
            return
        if box_size < header:
            return
        yield Box(kind, pos, pos + header, pos + box_size)
        pos += box_size


def mp4_whole(path: Path) -> bool:
    """Whether an ISO-BMFF (mp4/mov) file's top-level boxes end exactly at the end of the file. Other
    containers pass (ffmpeg judges them)."""
    with open(path, "rb") as f:
        if f.read(8)[4:8] != b"ftyp":
            return True
        end = 0
        for box in file_boxes(f):  # stops at a box cut off or invalid: its end is not the file's
            end = box.end
        return end == f.seek(0, 2)


def find(buf: bytes, start: int, end: int, *path: bytes) -> Box | None:
    """The first box along `path` (types, outermost first) within `buf[start:end]`, or None.

    Example: `find(moov, 0, len(moov), b"trak", b"mdia", b"mdhd")`.
    """
    for box in boxes(buf, start, end):
        if box.kind == path[0]:
            return box if len(path) == 1 else find(buf, box.payload, box.end, *path[1:])
    return None


def read_moov(path: Path) -> bytes | None:
    """The payload of the file's `moov` box (its children), or None when there is none or the file does
    not start like an ISO-BMFF file."""
    with open(path, "rb") as f:
        if f.read(8)[4:8] not in _FIRST_BOXES:
            return None
        for box in file_boxes(f):
            if box.kind == b"moov":
                f.seek(box.payload)
                return f.read(box.end - box.payload)
    return None


# -- Tracks -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoTrack:
    codec: str  # ffmpeg's name (h264, hevc, ...), else the sample entry's type
    width: int
    height: int
    fps: float  # from the first sample's duration; 0 when the track lists no samples (fragmented mp4)
    duration: float  # seconds
    # equal for two tracks of the same coded format: sample entry type, size, exact frame rate and the codec
    # configuration boxes (avcC, ...; these hold the profile and encoder parameters)
    signature: tuple[Any, ...]
    frames: int = 0  # samples in the track (0 for a fragmented mp4, whose samples are listed elsewhere)
    data_end: int = 0  # one past the last byte of sample data the tables point at: a whole file is this long


@dataclass(frozen=True)
class AudioTrack:
    codec: str  # ffmpeg's name (aac, opus, ...), else the sample entry's type
    rate: int  # samples a second
    channels: int
    # equal for two tracks of the same coded format: sample entry type, rate, channels, decoder configuration
    signature: tuple[Any, ...]


@dataclass(frozen=True)
class Movie:
    """What the `moov` box says: the file's duration and its first video and first audio track."""

    duration: float  # seconds, of the file (mvhd)
    video: VideoTrack | None
    audio: AudioTrack | None


def read_movie(path: Path) -> Movie | None:
    """The file's `Movie`, or None when it is not ISO-BMFF, has no `moov`/`mvhd`, or is malformed (any
    track this reader cannot parse counts as malformed, so that the caller asks ffmpeg instead)."""
    try:
        moov = read_moov(path)
        return None if moov is None else _parse_moov(moov)
    except (struct.error, IndexError, ValueError, ZeroDivisionError):
        return None


def _parse_moov(moov: bytes) -> Movie | None:
    mvhd = find(moov, 0, len(moov), b"mvhd")
    if mvhd is None:
        return None
    scale, duration = time_box(moov, mvhd.payload)
    container = duration / scale
    video: VideoTrack | None = None
    audio: AudioTrack | None = None
    for trak in boxes(moov, 0, len(moov)):
        if trak.kind != b"trak":
            continue
        hdlr = find(moov, trak.payload, trak.end, b"mdia", b"hdlr")
        mdhd = find(moov, trak.payload, trak.end, b"mdia", b"mdhd")
        stbl = find(moov, trak.payload, trak.end, b"mdia", b"minf", b"stbl")
        if hdlr is None or mdhd is None or stbl is None:
            continue
        handler = moov[hdlr.payload + 8 : hdlr.payload + 12]
        if (handler == b"vide" and video is None) or (handler == b"soun" and audio is None):
            timescale, track_duration = time_box(moov, mdhd.payload)
            if handler == b"vide":
                video = _video_track(moov, stbl, timescale, track_duration)
            else:
                audio = _audio_track(moov, stbl)
    return Movie(container, video, audio)


def time_box(buf: bytes, s: int) -> tuple[int, int]:
    """(timescale, duration) of the mvhd or mdhd box whose payload starts at `buf[s]`."""
    if buf[s] == 1:
        return struct.unpack_from(">I", buf, s + 20)[0], struct.unpack_from(">Q", buf, s + 24)[0]
    return struct.unpack_from(">II", buf, s + 12)


def _sample_entry(buf: bytes, stbl: Box) -> Box:
    """The track's one sample description (its codec); ValueError when it has none or several."""
    stsd = find(buf, stbl.payload, stbl.end, b"stsd")
    if stsd is None:
        raise ValueError("no stsd")
    n_entries = struct.unpack_from(">I", buf, stsd.payload + 4)[0]
    entries = list(boxes(buf, stsd.payload + 8, stsd.end))
    if n_entries != 1 or len(entries) != 1:
        raise ValueError("not exactly one sample description")
    return entries[0]


def _video_track(buf: bytes, stbl: Box, timescale: int, duration: int) -> VideoTrack:
    entry = _sample_entry(buf, stbl)
    codec = _CODECS.get(entry.kind, entry.kind.decode("latin-1").strip())
    es = entry.payload
    width, height = struct.unpack_from(">HH", buf, es + 24)
    configs = tuple((b.kind, buf[b.payload : b.end]) for b in boxes(buf, es + 78, entry.end) if b.kind in _CONFIG_BOXES)
    stts = find(buf, stbl.payload, stbl.end, b"stts")
    has_delta = stts is not None and struct.unpack_from(">I", buf, stts.payload + 4)[0] > 0
    delta = struct.unpack_from(">I", buf, stts.payload + 12)[0] if stts is not None and has_delta else 0
    fps = Fraction(timescale, delta) if delta else Fraction(0)
    frames, data_end = _sample_extent(buf, stbl)
    return VideoTrack(
        codec,
        width,
        height,
        float(fps),
        duration / timescale,
        (entry.kind, width, height, fps, configs),
        frames,
        data_end,
    )


def _sample_extent(buf: bytes, stbl: Box) -> tuple[int, int]:
    """(samples, one past the last byte of any sample) from the sample tables: sizes (stsz), samples per
    chunk (stsc) and chunk offsets (stco/co64). ValueError when a table is missing or disagrees with another."""
    stsz = find(buf, stbl.payload, stbl.end, b"stsz")
    stsc = find(buf, stbl.payload, stbl.end, b"stsc")
    stco = find(buf, stbl.payload, stbl.end, b"stco") or find(buf, stbl.payload, stbl.end, b"co64")
    if stsz is None or stsc is None or stco is None:
        raise ValueError("sample tables missing")
    size, count = struct.unpack_from(">II", buf, stsz.payload + 4)
    sizes = [size] * count if size else list(struct.unpack_from(f">{count}I", buf, stsz.payload + 12))
    chunks = struct.unpack_from(">I", buf, stco.payload + 4)[0]
    offsets = struct.unpack_from(f">{chunks}{'Q' if stco.kind == b'co64' else 'I'}", buf, stco.payload + 8)
    runs = struct.unpack_from(">I", buf, stsc.payload + 4)[0]
    table = struct.unpack_from(f">{3 * runs}I", buf, stsc.payload + 8)
    return count, data_end(sizes, [(table[3 * r], table[3 * r + 1]) for r in range(runs)], offsets)


def data_end(sizes: Sequence[int], runs: Sequence[tuple[int, int]], offsets: Sequence[int]) -> int:
    """One past the last byte of any sample, from the samples' sizes, the (first chunk, samples per chunk) runs of
    stsc and the chunk offsets. ValueError when the chunks hold more or fewer samples than `sizes` lists."""
    end = sample = 0
    for r, (first, per) in enumerate(runs):  # run r: chunks first .. the next run's first - 1 (1-based)
        last = runs[r + 1][0] - 1 if r + 1 < len(runs) else len(offsets)
        for chunk in range(first - 1, last):
            if sample + per > len(sizes):
                raise ValueError("chunks hold more samples than stsz lists")
            end = max(end, offsets[chunk] + sum(sizes[sample : sample + per]))
            sample += per
    if sample != len(sizes):
        raise ValueError("chunks hold fewer samples than stsz lists")
    return end


def _audio_track(buf: bytes, stbl: Box) -> AudioTrack:
    entry = _sample_entry(buf, stbl)
    codec = _CODECS.get(entry.kind, entry.kind.decode("latin-1").strip())
    es = entry.payload
    version = struct.unpack_from(">H", buf, es + 8)[0]
    channels = struct.unpack_from(">H", buf, es + 16)[0]
    rate = struct.unpack_from(">I", buf, es + 24)[0] >> 16
    children = es + 28 + {1: 16, 2: 36}.get(version, 0)
    config: tuple[Any, ...] = ()
    for b in boxes(buf, children, entry.end):
        if b.kind == b"esds":
            oti, dsi = read_esds(buf[b.payload + 4 : b.end])  # skip version/flags
            codec = _AUDIO_OTI.get(oti, codec)
            config = (oti, dsi)  # not the bitrates esds also holds: those differ clip to clip
        elif b.kind in _CONFIG_BOXES:
            config = (b.kind, buf[b.payload : b.end])
    if version == 2:  # QuickTime v2: the real rate and channels are further on
        rate = int(struct.unpack_from(">d", buf, es + 32)[0])
        channels = struct.unpack_from(">I", buf, es + 40)[0]
    return AudioTrack(codec, rate, channels, (entry.kind, rate, channels, config))


def read_esds(d: bytes) -> tuple[int, bytes]:
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
