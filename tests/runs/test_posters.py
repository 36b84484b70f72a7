"""Posters are cut in batches (one ffmpeg for many clips), and a batch that one clip breaks still gives every
other clip its poster, each the frame a third of the way in, as a poster cut on its own would be."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image

from wanbatch.av.encode import write_clip
from wanbatch.config.schema import EncodeConfig
from wanbatch.runs import posters as posters_module
from wanbatch.runs.posters import BATCH, EarlyPosters, cut_poster, cut_posters

FAST = EncodeConfig(preset="ultrafast", crf=18)


def _clip(path: Path, shade: int, seconds: float = 1.5, fps: int = 8) -> Path:
    """A clip whose first third is black and the rest `shade` grey: the poster says where it was cut."""
    n = int(seconds * fps)
    frames = [np.full((48, 64, 3), 0 if i < n // 3 - 1 else shade, np.uint8) for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_clip(frames, path, fps=fps, settings=FAST)
    return path


def _shade(png: Path) -> int:
    return int(np.asarray(Image.open(png).convert("L")).mean().round())


def _spy(monkeypatch) -> list[list[str]]:
    """The posters each ffmpeg call was asked to write."""
    calls: list[list[str]] = []
    real = posters_module.run_ffmpeg

    def spy(args, **kw):
        calls.append([a for a in args if a.endswith(".png")])
        return real(args, **kw)

    monkeypatch.setattr(posters_module, "run_ffmpeg", spy)
    return calls


def test_a_pages_posters_are_cut_by_few_ffmpegs_each_at_a_third_of_its_clip(tmp_path, monkeypatch):
    calls = _spy(monkeypatch)
    jobs = {f"{i:03d}": (_clip(tmp_path / f"clips/{i}.mp4", 40 + 4 * i), 1.5, None) for i in range(24)}
    got = cut_posters(tmp_path, jobs)
    assert got == {name: f"posters/{name}.png" for name in jobs}
    for i, name in enumerate(jobs):
        assert abs(_shade(tmp_path / got[name]) - (40 + 4 * i)) <= 3, name  # its own clip, past the black third
    assert len(calls) <= 4 and all(len(c) <= BATCH for c in calls)  # 24 posters, not 24 processes
    assert sorted(p for c in calls for p in c) == sorted(str(tmp_path / got[n]) for n in jobs)


def test_a_clip_that_breaks_its_batch_costs_only_its_own_poster(tmp_path, monkeypatch):
    calls = _spy(monkeypatch)
    good = {f"{i:03d}": (_clip(tmp_path / f"clips/{i}.mp4", 120), 1.5, None) for i in range(5)}
    (tmp_path / "clips/broken.mp4").write_bytes(b"not a video at all")
    short = _clip(tmp_path / "clips/short.mp4", 200, seconds=0.5)  # said to last 30 s: its seek finds nothing
    jobs = {**good, "broken": (tmp_path / "clips/broken.mp4", 1.5, None), "short": (short, 30.0, None)}
    got = cut_posters(tmp_path, jobs)
    assert got["broken"] is None and not (tmp_path / "posters/broken.png").exists()
    assert got["short"] == "posters/short.png"  # cut again at its start
    for name in good:
        assert got[name] == f"posters/{name}.png" and _shade(tmp_path / got[name]) >= 117
    assert len(calls) > 1  # the batch, then one at a time for what it left


def test_cut_poster_alone_and_in_a_batch_cut_the_same_frame(tmp_path):
    clip = _clip(tmp_path / "clips/a.mp4", 90)
    alone = cut_poster(tmp_path / "alone", "a", clip, 1.5, None, None)
    other = _clip(tmp_path / "clips/b.mp4", 30)
    batch = cut_posters(tmp_path / "batch", {"a": (clip, 1.5, None), "b": (other, 1.5, None)})
    assert alone == batch["a"] == "posters/a.png"
    a1 = np.asarray(Image.open(tmp_path / "alone" / alone))
    a2 = np.asarray(Image.open(tmp_path / "batch" / batch["a"]))
    assert a1.shape == a2.shape and np.abs(a1.astype(int) - a2.astype(int)).max() <= 2


def test_early_posters_batch_the_clips_that_land_while_one_is_cut(tmp_path, monkeypatch):
    """A burst of clips lands while the worker cuts the first one: it cuts the rest in a batch, not one by one."""
    clips = {f"{i:03d}": _clip(tmp_path / f"clips/{i}.mp4", 100) for i in range(10)}
    busy, release = threading.Event(), threading.Event()
    real = posters_module.run_ffmpeg
    calls: list[list[str]] = []

    def held(args, **kw):  # the first cut waits until the whole burst is queued
        calls.append([a for a in args if a.endswith(".png")])
        if len(calls) == 1:
            busy.set()
            assert release.wait(60)
        return real(args, **kw)

    monkeypatch.setattr(posters_module, "run_ffmpeg", held)
    early = EarlyPosters(tmp_path, None, workers=1)
    try:
        names = list(clips)
        early.add(names[0], clips[names[0]], 1.5, None)
        assert busy.wait(60)
        for name in names[1:]:
            early.add(name, clips[name], 1.5, None)
        release.set()
        for name in names:
            assert early.get(name, clips[name]) == f"posters/{name}.png"
    finally:
        release.set()
        early.close()
    assert [len(c) for c in calls] == [1, 9]


def test_closing_early_posters_leaves_no_thread_and_no_cut_pending(tmp_path, monkeypatch):
    clip = _clip(tmp_path / "clips/a.mp4", 100)
    busy, release = threading.Event(), threading.Event()
    real = posters_module.run_ffmpeg

    def held(args, **kw):
        busy.set()
        assert release.wait(60)
        return real(args, **kw)

    monkeypatch.setattr(posters_module, "run_ffmpeg", held)
    early = EarlyPosters(tmp_path, None, workers=1)
    early.add("a", clip, 1.5, None)
    assert busy.wait(60)
    early.add("b", clip, 1.5, None)  # queued behind the held cut
    closing = threading.Thread(target=early.close)
    closing.start()
    release.set()
    closing.join(60)
    assert not closing.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("wanbatch-poster")]
    assert early.get("a", clip) == "posters/a.png"
    assert early.get("b", clip) is ...  # never cut: the report would cut it itself
    early.add("c", clip, 1.5, None)  # after close: ignored, not hung
    assert early.get("c", clip) is ...


def test_the_first_rerun_cuts_no_poster_and_makes_no_timeline(tmp_path, monkeypatch, run_cfg, cache_dir):
    """A render's film becomes the stored film (one file, as a rerun's is), so the rerun right after it finds the
    film's poster, and the timeline, that the render made: no ffmpeg cuts a poster, OpenTimelineIO is not asked."""
    import pytest

    pytest.importorskip("opentimelineio")
    from wanbatch.config.load import load_config
    from wanbatch.film import timeline as timeline_module

    from conftest import write_project

    scenes = [{"id": "a", "seed": 1, "prompt": "first"}, {"id": "b", "seed": 2, "prompt": "second"}]
    project = write_project(tmp_path / "proj", scenes)
    cfg = load_config(project, [f"cache.dir={cache_dir}", "executor.progress=none"])
    code, first, _ = run_cfg(cfg, root=project.parent)
    assert code == 0
    stored = sorted((cache_dir / "posters").glob("*.png"))
    assert len(stored) == 3  # two clips and the film
    # a poster just cut is kept in the cache as a link of the page's own, not written a second time
    cut = sorted(p.stat().st_ino for p in (first / "posters").glob("*.png"))
    assert cut == sorted(s.stat().st_ino for s in stored)

    calls = _spy(monkeypatch)
    monkeypatch.setattr(timeline_module, "_otio_text", lambda *a: pytest.fail("the timeline was made again"))
    code, rerun, _ = run_cfg(cfg, root=project.parent)
    assert code == 0
    assert calls == [] and sorted((cache_dir / "posters").glob("*.png")) == stored
    assert (rerun / "film.otio").read_text() == (first / "film.otio").read_text()
    assert (first / "film.mp4").samefile(rerun / "film.mp4")  # both the cache's film
    shown = [sorted(p.name for p in (run / "posters").iterdir()) for run in (first, rerun)]
    assert shown[0] == shown[1] and len(shown[0]) == 3


def test_the_films_poster_is_cut_as_soon_as_the_film_is_made_not_by_the_page(tmp_path, monkeypatch, run_cfg, cache_dir):
    """The film's poster is queued to the run's poster worker the moment the film is joined, so it is cut while
    the manifest and the timeline are written; the page only takes it."""
    from wanbatch.config.load import load_config

    from conftest import write_project

    cut_on: dict[str, str] = {}
    real = posters_module.run_ffmpeg

    def spy(args, **kw):
        for a in args:
            if a.endswith(".png"):
                cut_on[Path(a).name.split(".")[0]] = threading.current_thread().name
        return real(args, **kw)

    monkeypatch.setattr(posters_module, "run_ffmpeg", spy)
    scenes = [{"id": "a", "seed": 1, "prompt": "first"}, {"id": "b", "seed": 2, "prompt": "second"}]
    project = write_project(tmp_path / "proj", scenes)
    cfg = load_config(project, [f"cache.dir={cache_dir}", "executor.progress=none"])
    code, run, _ = run_cfg(cfg, root=project.parent)
    assert code == 0
    assert len(cut_on) == 3, cut_on  # two clips and the film
    assert all(name.startswith("wanbatch-poster") for name in cut_on.values()), cut_on
    assert (run / "posters" / "film.png").is_file()
    assert 'poster="posters/film.png"' in (run / "index.html").read_text()
