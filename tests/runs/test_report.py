"""index.html: every scene on the contact sheet, all text escaped, only relative links, nothing from the network."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from wanbatch.av.encode import write_clip
from wanbatch.config.schema import EncodeConfig
from wanbatch.runs.report import write_report

FAST = EncodeConfig(preset="ultrafast", crf=23)
NASTY = 'a "quoted" <b>bold</b> & <script>alert(1)</script> prompt'


def make_run(run_dir: Path) -> dict:
    """A run folder like the executor leaves it: clips/, film.mp4 and the manifest (with a failed scene)."""
    (run_dir / "clips").mkdir(parents=True)
    scenes = []
    colors = [(200, 60, 60), (60, 200, 60), (60, 60, 200)]
    for i, color in enumerate(colors):
        rel = f"clips/{i + 1:03d}-s{i}.mp4"
        frames = [np.full((96, 160, 3), color, np.uint8)] * 16
        write_clip(frames, run_dir / rel, fps=16, settings=FAST)
        scenes.append(
            {
                "id": f"s{i}",
                "status": "cached" if i == 1 else "rendered",
                "cache_key": f"{i:064x}",
                "backend": "preview",
                "model": "preview",
                "seed": 100 + i,
                "clip": rel,
                "request_id": f"req-{i}",
                "error": None,
                "seconds": 1.25 * i,
                "prompt": NASTY if i == 0 else f"scene {i}",
                "duration": 1.0,
                "transition": {"type": "crossfade" if i == 2 else "cut", "duration": 0.5 if i == 2 else 0.0},
                "extra_key_we_do_not_know": {"x": 1},
            }
        )
    scenes.append(
        {
            "id": "broken <one>",
            "status": "failed",
            "cache_key": "f" * 64,
            "backend": "novita_wan21_t2v",
            "model": "wan2.1-t2v",
            "seed": 7,
            "clip": None,
            "request_id": "task-42",
            "error": "ProviderError: content policy <rejected> & refunded",
            "seconds": 3.0,
            "prompt": "a failing scene",
        }
    )
    (run_dir / "film.mp4").write_bytes((run_dir / scenes[0]["clip"]).read_bytes())
    (run_dir / "manifest.json").write_text("{}")
    return {
        "project": "demo & <friends>",
        "scenes": scenes,
        "film": "film.mp4",
        "stitch": {"method": "copy", "reason": "all clips match", "duration": 3.0, "seconds": 0.05},
        "timeline": "film.otio",
        "counts": {"rendered": 2, "cached": 1, "failed": 1},
        "started": 0.0,
        "finished": 1.0,
        "something_new": [1, 2, 3],
    }


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "poster") and value is not None:
                self.urls.append((tag, name, value))


@pytest.fixture
def report(tmp_path):
    manifest = make_run(tmp_path)
    path = write_report(tmp_path, manifest)
    return tmp_path, manifest, path.read_text(encoding="utf-8")


def test_page_is_written(report):
    run_dir, _, page = report
    assert (run_dir / "index.html").is_file()
    assert page.startswith("<!doctype html>")


def test_every_scene_has_a_card(report):
    _, manifest, page = report
    cards = re.findall(r'<article class="scene [^"]*"[^>]*data-scene="([^"]*)"', page)
    assert cards == ["s0", "s1", "s2", "broken &lt;one&gt;"]
    for s in manifest["scenes"]:
        if s["clip"]:
            assert f'src="{s["clip"]}"' in page
        assert str(s["seed"]) in page and s["backend"] in page and s["request_id"] in page
    assert "hit (from the cache)" in page and "miss (rendered now)" in page
    assert "1.25 s" in page  # render time
    assert "crossfade 0.5 s" in page


def test_text_is_escaped(report):
    _, _, page = report
    assert "<script" not in page.lower()
    assert "<b>bold</b>" not in page
    assert "a &quot;quoted&quot; &lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt; prompt" in page
    assert "demo &amp; &lt;friends&gt;" in page


def test_failed_scene_shows_its_error(report):
    _, _, page = report
    card = page[page.index('data-scene="broken &lt;one&gt;"') :]
    card = card[: card.index("</article>")]
    assert 'data-status="failed"' in card
    assert "ProviderError: content policy &lt;rejected&gt; &amp; refunded" in card
    assert "task-42" in card
    assert "<video" not in card


def test_only_relative_links_that_exist_and_no_network(report):
    run_dir, _, page = report
    parser = Links()
    parser.feed(page)
    assert parser.urls, "no links at all?"
    assert "http://" not in page and "https://" not in page
    assert "//" not in re.sub(r"<style>.*?</style>", "", page, flags=re.S)  # no protocol-relative URL either
    for tag, attr, url in parser.urls:
        if url.startswith("data:"):
            continue
        assert not url.startswith("/") and ":" not in url and ".." not in url, (tag, attr, url)
        if url != "film.otio":  # the timeline is written after the report
            assert (run_dir / unquote(url)).is_file(), (tag, attr, url)
    assert "script" not in parser.tags  # no JavaScript at all
    assert all(not (t == "link" and u.endswith(".css")) for t, _, u in parser.urls)


def test_posters_and_film_at_the_top(report):
    run_dir, _, page = report
    posters = sorted(p.name for p in (run_dir / "posters").glob("*.png"))
    # named by the scene's number and sanitised id (core.names.file_stem), as the clips are
    assert posters == ["001-s0.png", "002-s1.png", "003-s2.png", "film.png"]
    assert page.index('id="film"') < page.index("<article")
    assert 'poster="posters/001-s0.png"' in page


def test_minimal_and_odd_manifests_are_tolerated(tmp_path):
    manifest = {
        "scenes": [
            {"id": "x"},
            {"id": "y", "status": "failed", "clip": "../outside.mp4", "error": None},
            "not a scene",
        ],
        "film": None,
    }
    page = write_report(tmp_path, manifest).read_text()
    assert 'data-scene="x"' in page and 'data-scene="y"' in page
    links = re.findall(r'(?:src|href|poster)="([^"]*)"', page)
    assert not [u for u in links if "outside" in u or ".." in u]  # never linked out of the run folder
    assert "clip missing: ../outside.mp4" in page
    assert "the film was not made" in page


def test_rewriting_replaces_stale_posters(tmp_path):
    manifest = make_run(tmp_path)
    write_report(tmp_path, manifest)
    first = (tmp_path / "posters" / "001-s0.png").read_bytes()
    write_clip(
        [np.full((96, 160, 3), (255, 255, 255), np.uint8)] * 16,
        tmp_path / "clips" / "001-s0.mp4",
        fps=16,
        settings=FAST,
    )
    write_report(tmp_path, manifest)
    assert (tmp_path / "posters" / "001-s0.png").read_bytes() != first


def test_a_rerun_links_its_posters_from_the_cache_and_cuts_none(tmp_path, monkeypatch):
    import os

    cuts = _count_cuts(monkeypatch)
    first, again, cache = tmp_path / "run1", tmp_path / "run2", tmp_path / "posters"
    manifest = make_run(first)
    manifest["stitch"]["cache_key"] = "e" * 64
    write_report(first, manifest, poster_cache=cache)
    assert len(cuts) >= 4 and len(list(cache.glob("*.png"))) == 4  # three clips and the film

    # The next run of the same project: the same cached blobs, hard-linked into another run folder.
    (again / "clips").mkdir(parents=True)
    for rel in [s["clip"] for s in manifest["scenes"] if s["clip"]] + ["film.mp4"]:
        os.link(first / rel, again / rel)
    cuts.clear()
    write_report(again, manifest, poster_cache=cache)
    assert cuts == []
    for name in ("001-s0.png", "002-s1.png", "003-s2.png", "film.png"):
        assert (again / "posters" / name).read_bytes() == (first / "posters" / name).read_bytes()

    # Another file under the same key (a re-render, an edit in place) gets a poster of its own.
    (again / "clips" / "001-s0.mp4").unlink()
    write_clip(
        [np.full((96, 160, 3), (255, 255, 255), np.uint8)] * 16, again / "clips" / "001-s0.mp4", fps=16, settings=FAST
    )
    write_report(again, manifest, poster_cache=cache)
    assert cuts == [str(again / "posters" / "001-s0.png")]
    assert (again / "posters" / "001-s0.png").read_bytes() != (first / "posters" / "001-s0.png").read_bytes()


def test_posters_cut_as_clips_land_are_the_reports_and_not_cut_again(tmp_path, monkeypatch):
    from wanbatch.runs import posters as posters_module
    from wanbatch.runs.posters import EarlyPosters, poster_name

    cuts: list[str] = []
    real = posters_module.run_ffmpeg

    def counting(args, **kw):  # every poster an ffmpeg is asked to write (a batch writes several)
        cuts.extend(a for a in args if a.endswith(".png"))
        return real(args, **kw)

    monkeypatch.setattr(posters_module, "run_ffmpeg", counting)
    manifest = make_run(tmp_path)
    scenes = manifest["scenes"]
    early = EarlyPosters(tmp_path, None)
    try:
        # Two clips land while the third still renders: their posters are cut meanwhile, on the worker.
        for i in (0, 1):
            early.add(poster_name(i, scenes[i]), tmp_path / scenes[i]["clip"], 1.0, scenes[i]["cache_key"])
        for i in (0, 1):
            assert early.get(poster_name(i, scenes[i]), tmp_path / scenes[i]["clip"]) == f"posters/00{i + 1}-s{i}.png"
        assert sorted(p.name for p in (tmp_path / "posters").iterdir()) == ["001-s0.png", "002-s1.png"]
        assert len(cuts) == 2
        # The last clip lands; the report cuts only what was not cut yet: that clip's poster and the film's.
        cuts.clear()
        page = write_report(tmp_path, manifest, early=early).read_text(encoding="utf-8")
    finally:
        early.close()
    assert {Path(c).name for c in cuts} == {"003-s2.png", "film.png"}  # (the film's may take two seeks)
    for name in ("001-s0", "002-s1", "003-s2", "film"):
        assert f'poster="posters/{name}.png"' in page


def test_a_poster_queued_for_another_file_is_cut_again(tmp_path):
    from wanbatch.runs.posters import EarlyPosters, poster_name

    manifest = make_run(tmp_path)
    s0 = manifest["scenes"][0]
    early = EarlyPosters(tmp_path, None)
    try:
        early.add(poster_name(0, s0), tmp_path / "clips" / "elsewhere.mp4", 1.0, s0["cache_key"])
        assert not early.has(poster_name(0, s0), tmp_path / s0["clip"])
        write_report(tmp_path, manifest, early=early)
    finally:
        early.close()
    assert (tmp_path / "posters" / "001-s0.png").is_file()


def _count_cuts(monkeypatch) -> list[str]:
    """Every poster an ffmpeg is asked to write from now on (one ffmpeg cuts a batch of them)."""
    from wanbatch.runs import posters as posters_module

    cuts: list[str] = []
    real = posters_module.run_ffmpeg

    def counting(args, **kw):
        cuts.extend(a for a in args if a.endswith(".png"))
        return real(args, **kw)

    monkeypatch.setattr(posters_module, "run_ffmpeg", counting)
    return cuts
