"""The whole-video check of a download: cut-off mp4s, mp4s whose samples lie past their end, non-videos and
files without video never pass; a whole mp4 is read without ffmpeg; probes that arrive together share
ffmpeg runs without changing any answer."""

from __future__ import annotations

import io
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from wanbatch.av.encode import write_clip
from wanbatch.av.ffmpeg import probe
from wanbatch.av.mp4 import boxes, file_boxes, find
from wanbatch.backends.remote import download as remote_download
from wanbatch.backends.remote.download import check_video, mp4_whole
from wanbatch.backends.remote.probe import Opened, Prober
from wanbatch.config.schema import EncodeConfig
from wanbatch.errors import DownloadError
from wanbatch.testing.fakeprovider.video import tagged

import remote_fixtures as rf


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Ten distinct whole clips, a cut-off one, an HTML page and a wav."""
    d = tmp_path_factory.mktemp("downloads")
    frames = [np.full((32, 48, 3), i * 20, np.uint8) for i in range(8)]
    whole = write_clip(frames, d / "whole.mp4", fps=8, settings=EncodeConfig(preset="ultrafast")).read_bytes()
    out = {f"ok{i}": d / f"ok{i}.mp4" for i in range(10)}
    for i, path in enumerate(out.values()):
        path.write_bytes(tagged(whole, f"job-{i}"))  # as the fake serves them: each its own bytes
    out["cut"] = d / "cut.mp4"
    out["cut"].write_bytes(whole[: len(whole) // 2])
    out["html"] = d / "page.mp4"
    out["html"].write_bytes(b"<html><body>Service Unavailable</body></html>")
    out["wav"] = rf.write_wav(d / "voice.wav", 1.0)
    return out


def test_a_whole_clip_passes_and_each_bad_download_is_told_apart(clips: dict[str, Path]) -> None:
    check_video(clips["ok0"], "s")
    assert mp4_whole(clips["ok0"]) and not mp4_whole(clips["cut"]) and mp4_whole(clips["html"])
    with pytest.raises(DownloadError, match="cut short"):
        check_video(clips["cut"], "s")
    with pytest.raises(DownloadError, match="not a video ffmpeg can open"):
        check_video(clips["html"], "s")
    with pytest.raises(DownloadError, match="no video stream"):
        check_video(clips["wav"], "s")


class _NoFfmpeg:
    def open(self, path: Path) -> Opened:
        raise AssertionError(f"ffmpeg was started for {path.name}")


def test_a_whole_mp4_is_checked_without_starting_ffmpeg_and_anything_else_goes_to_it(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_download, "PROBES", _NoFfmpeg())
    for name in ("ok0", "ok1"):
        check_video(clips[name], "s")  # read in Python: no ffmpeg
    for name in ("html", "wav"):
        with pytest.raises(AssertionError, match="ffmpeg was started"):
            check_video(clips[name], "s")


def test_an_mp4_whose_samples_are_listed_past_its_end_never_passes(clips: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(clips["ok0"].read_bytes())
    moov = next(b for b in file_boxes(io.BytesIO(bytes(data))) if b.kind == b"moov")
    vide = next(
        t for t in boxes(data, moov.payload, moov.end) if t.kind == b"trak" and b"vide" in data[t.payload : t.end]
    )
    stco = find(data, vide.payload, vide.end, b"mdia", b"minf", b"stbl", b"stco")
    assert stco is not None
    struct.pack_into(">I", data, stco.payload + 8, len(data))  # its first chunk now starts at the end of the file
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    assert mp4_whole(broken)  # its boxes are whole: only the sample tables tell
    with pytest.raises(DownloadError, match="listed past the end"):
        check_video(broken, "s")


def test_probes_that_arrive_together_share_ffmpeg_runs(clips: dict[str, Path]) -> None:
    prober = Prober(runners=1)
    names = [f"ok{i}" for i in range(10)]
    start = threading.Barrier(len(names))
    got: dict[str, Opened] = {}

    def open_one(name: str) -> None:
        start.wait()
        got[name] = prober.open(clips[name])

    threads = [threading.Thread(target=open_one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    alone = probe(clips["ok0"])
    assert got == {n: Opened(True, alone.duration) for n in names}
    assert prober.runs <= 5  # ten probes; one ffmpeg run each without batching


def test_a_bad_file_in_a_batch_is_told_exactly_as_alone(clips: dict[str, Path]) -> None:
    prober = Prober(runners=1)
    names = ["ok1", "html", "ok2", "wav", "ok3"]
    start = threading.Barrier(len(names))
    got: dict[str, object] = {}

    def open_one(name: str) -> None:
        start.wait()
        try:
            got[name] = prober.open(clips[name])
        except ValueError as exc:
            got[name] = str(exc)

    threads = [threading.Thread(target=open_one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with pytest.raises(ValueError) as alone:
        probe(clips["html"])
    wav = probe(clips["wav"])
    assert got["html"] == str(alone.value)
    assert got["wav"] == Opened(False, wav.duration)
    assert all(got[n] == Opened(True, probe(clips[n]).duration) for n in ("ok1", "ok2", "ok3"))
