"""The timeline export: the same cut as the film, as OTIO, or as a CMX3600 EDL without OpenTimelineIO."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from wanbatch.av.encode import write_clip
from wanbatch.config.schema import EncodeConfig, StitchConfig
from wanbatch.core.scene import Transition
from wanbatch.film.clips import FilmClip
from wanbatch.film.stitch import stitch_film
from wanbatch.film.timeline import write_timeline

FAST = EncodeConfig(preset="ultrafast", crf=23)
SECONDS = [2.0, 1.5, 2.0, 1.0]
TRANSITIONS = [None, {"type": "crossfade", "duration": 0.5}, {"type": "fade", "duration": 1.0}, "crossfade"]


def make_run(run_dir: Path) -> dict:
    (run_dir / "clips").mkdir(parents=True)
    scenes = []
    for i, seconds in enumerate(SECONDS):
        rel = f"clips/{i + 1:03d}-s{i}.mp4"
        write_clip(
            [np.full((96, 160, 3), 40 * i, np.uint8)] * round(seconds * 16), run_dir / rel, fps=16, settings=FAST
        )
        scenes.append(
            {
                "id": f"s{i}",
                "status": "rendered",
                "clip": rel,
                "prompt": f"shot {i}",
                "seed": i,
                "backend": "preview",
                "model": "preview",
                "cache_key": f"{i:064x}",
                "transition": TRANSITIONS[i] or {"type": "cut", "duration": 0.0},
            }
        )
    return {"project": "cut & paste", "scenes": scenes, "film": "film.mp4"}


def film_seconds() -> float:
    # 2 + 1.5 + 2 + 1 minus the crossfades (0.5, and 0.5 by default); the fade overlaps nothing
    return sum(SECONDS) - 0.5 - 0.5


def test_otio_has_the_clips_and_transitions(tmp_path):
    otio = pytest.importorskip("opentimelineio")
    manifest = make_run(tmp_path)
    path = write_timeline(tmp_path, manifest)
    assert path == tmp_path / "film.otio"
    timeline = otio.adapters.read_from_file(str(path))
    track = timeline.tracks[0]
    kinds = [type(item).__name__ for item in track]
    assert kinds == ["Clip", "Transition", "Clip", "Transition", "Clip", "Transition", "Clip"]
    clips = [item for item in track if isinstance(item, otio.schema.Clip)]
    assert [c.name for c in clips] == ["s0", "s1", "s2", "s3"]
    for c in clips:
        url = c.media_reference.target_url
        assert not url.startswith(("/", "file:", "http")) and (tmp_path / unquote(url)).is_file()
        assert c.metadata["wanbatch"]["prompt"].startswith("shot")
    dissolve, fade, dissolve2 = (item for item in track if isinstance(item, otio.schema.Transition))
    assert dissolve.transition_type == otio.schema.TransitionTypes.SMPTE_Dissolve
    assert dissolve.in_offset.to_seconds() == dissolve.out_offset.to_seconds() == 0.25
    assert fade.name == "fade_through_black" and fade.metadata["wanbatch"]["duration"] == 1.0
    assert dissolve2.in_offset.to_seconds() == 0.25  # a bare "crossfade" is 0.5 s
    assert timeline.duration().to_seconds() == pytest.approx(film_seconds())


def test_otio_cut_lasts_as_long_as_the_film(tmp_path):
    otio = pytest.importorskip("opentimelineio")
    manifest = make_run(tmp_path)
    trs = [Transition(), Transition("crossfade", 0.5), Transition("fade", 1.0), Transition("crossfade", 0.5)]
    clips = [FilmClip(tmp_path / s["clip"], s["id"], t) for s, t in zip(manifest["scenes"], trs, strict=True)]
    film = stitch_film(clips, tmp_path / "film.mp4", settings=StitchConfig(), encode=FAST)
    timeline = otio.adapters.read_from_file(str(write_timeline(tmp_path, manifest)))
    assert timeline.duration().to_seconds() == pytest.approx(film.duration, abs=1 / 16)


def test_clips_described_as_they_landed_are_not_read_again(tmp_path, monkeypatch):
    """A run reads each clip's header as it lands (for the film); the timeline, written after the last clip,
    takes those and reads only the clips it was not given."""
    otio = pytest.importorskip("opentimelineio")
    from wanbatch.film import clips as clips_module
    from wanbatch.film.clips import probe_clips

    manifest = make_run(tmp_path)
    paths = [tmp_path / s["clip"] for s in manifest["scenes"]]
    probed = dict(zip(paths[:3], probe_clips(paths[:3]), strict=True))
    read: list[Path] = []
    monkeypatch.setattr(clips_module, "probe_clips", lambda ps: (read.extend(ps), probe_clips(ps))[1])
    timeline = otio.adapters.read_from_file(str(write_timeline(tmp_path, manifest, probed=probed)))
    assert read == [paths[3]]
    assert timeline.duration().to_seconds() == pytest.approx(film_seconds())


def test_failed_scenes_are_left_out(tmp_path):
    otio = pytest.importorskip("opentimelineio")
    manifest = make_run(tmp_path)
    manifest["scenes"].insert(1, {"id": "lost", "status": "failed", "clip": None, "error": "boom"})
    timeline = otio.adapters.read_from_file(str(write_timeline(tmp_path, manifest)))
    assert "lost" not in [item.name for item in timeline.tracks[0]]


def test_edl_without_opentimelineio(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "opentimelineio", None)  # `import opentimelineio` now fails
    manifest = make_run(tmp_path)
    path = write_timeline(tmp_path, manifest)
    assert path == tmp_path / "film.edl"
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "TITLE: cut & paste" and lines[1] == "FCM: NON-DROP FRAME"
    events = [line for line in lines if line[:3].isdigit()]
    # s0 cut; s1 dissolve (outgoing hold + incoming D line); s2 cut (fade noted); s3 dissolve
    assert [e.split()[0] for e in events] == ["001", "002", "002", "003", "004", "004"]
    assert events[0].split()[-4:] == ["00:00:00:00", "00:00:01:08", "00:00:00:00", "00:00:01:08"]
    d = events[2].split()
    assert d[3] == "D" and d[4] == "008"  # 0.5 s at 16 fps
    assert d[-2:] == ["00:00:01:08", "00:00:03:00"]  # s1 on the record side: 1.5 s .. 3 s
    assert "FADE THROUGH BLACK" in text
    last = events[-1].split()
    assert last[-1] == "00:00:05:08"  # the film's end: 5.5 s
    assert "* SOURCE FILE: clips/002-s1.mp4" in text


def test_no_clips_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no scene with a clip"):
        write_timeline(tmp_path, {"scenes": [{"id": "x", "status": "failed", "clip": None}]})


def test_a_cut_made_before_is_taken_from_the_cache_not_made_again(tmp_path, monkeypatch):
    """The OTIO text of a cut is kept in the cache's `timelines/` under the film's key; a rerun with the same cut
    copies it (OpenTimelineIO is not even imported), a cut that differs in anything is made anew."""
    otio = pytest.importorskip("opentimelineio")
    from wanbatch.film import timeline as timeline_module

    kept = tmp_path / "cache" / "timelines"
    manifest = {**make_run(tmp_path / "run1"), "stitch": {"cache_key": "f" * 32}}
    first = write_timeline(tmp_path / "run1", manifest, kept=kept).read_text()
    assert [p.name.split("-")[0] for p in kept.iterdir()] == ["f" * 32]  # pruned with the film's entry

    def not_again(*_: object) -> str:
        raise AssertionError("the cut was made again")

    monkeypatch.setattr(timeline_module, "_otio_text", not_again)
    shutil.copytree(tmp_path / "run1" / "clips", tmp_path / "run2" / "clips")
    for scene in manifest["scenes"]:  # the first rerun: every clip from the cache, the cut unchanged
        scene["status"] = "cached"
    assert write_timeline(tmp_path / "run2", manifest, kept=kept).read_text() == first
    monkeypatch.undo()

    manifest["scenes"][2]["prompt"] = "shot 2, brighter"
    again = otio.adapters.read_from_file(str(write_timeline(tmp_path / "run2", manifest, kept=kept)))
    s2 = next(item for item in again.tracks[0] if item.name == "s2")
    assert s2.metadata["wanbatch"]["prompt"] == "shot 2, brighter"
    assert len(list(kept.iterdir())) == 2


def test_without_a_film_key_nothing_is_kept(tmp_path):
    pytest.importorskip("opentimelineio")
    kept = tmp_path / "cache" / "timelines"
    assert write_timeline(tmp_path, make_run(tmp_path), kept=kept).name == "film.otio"
    assert not kept.exists()
