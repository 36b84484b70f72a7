"""The comparison page: a sweep (`wanbatch -m ...`) writes index.html into its folder, comparing its members
(rows = scenes, columns = members headed by what each changed, films on top); `wanbatch compare` builds the
same page for any runs. Opened in a real Chromium: every video plays, no console error, a screenshot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from wanbatch.cli.sweep_page import sweep_members
from wanbatch.runs.compare import write_comparison

from chromium import CHROMIUM, NO_CHROMIUM, Browser, console_errors, open_page, play_all, screenshot
from conftest import DATA, REPO

SWEEP = DATA / "sweep"


def _wanbatch(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wanbatch.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


class Page(HTMLParser):
    """The comparison table as data: headings, and per row its cells' videos and texts."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.links: list[str] = []
        self._row: str | None = None
        self._cell: dict[str, Any] | None = None
        self._in_head_code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in ("src", "href", "poster"):
            if a.get(name) and not (tag == "link" and a.get("rel") == "icon"):  # the icon is `data:,`: no request
                self.links.append(str(a[name]))
        if tag == "tr":
            self._row = a.get("data-scene") or ("film" if a.get("class") == "films" else None)
            if self._row is not None:
                key = self._row if a.get("data-take") in (None, "1") else f"{self._row}#{a['data-take']}"
                self._row = key
                self.rows[key] = []
        elif tag == "td" and self._row is not None:
            self._cell = {"videos": [], "text": ""}
            self.rows[self._row].append(self._cell)
        elif tag == "video" and self._cell is not None:
            self._cell["videos"].append(a.get("src"))
        elif tag == "code" and a.get("class") == "changed":
            self._in_head_code = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "code":
            self._in_head_code = False

    def handle_data(self, data: str) -> None:
        if self._in_head_code:
            self.headings.append(data)
        elif self._cell is not None:
            self._cell["text"] += data


def _page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    return page


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-member seed sweep of the sweep project, with films and pages (the project turns both off)."""
    tmp = tmp_path_factory.mktemp("sweep")
    proc = _wanbatch(
        "-m",
        "--config-dir",
        str(SWEEP),
        "scenes.0.seed=21,22,23",
        "report=true",
        "stitch.enabled=true",
        f"cache.dir={tmp / 'cache'}",
        f"hydra.sweep.dir={tmp / 'multirun'}",
        "executor.progress=none",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"comparison of 3 runs: {tmp / 'multirun' / 'index.html'}" in proc.stdout
    return tmp / "multirun"


def test_a_seed_sweep_writes_one_page_with_every_take_of_the_swept_scene_and_shared_scenes_once(sweep):
    page = _page(sweep / "index.html")
    assert page.headings == ["scenes.0.seed=21", "scenes.0.seed=22", "scenes.0.seed=23"]
    assert list(page.rows) == ["film", "opening", "middle", "ending"]
    assert [c["videos"] for c in page.rows["film"]] == [["0/film.mp4"], ["1/film.mp4"], ["2/film.mp4"]]
    # the swept scene: three clips, each rendered with its own seed
    opening = page.rows["opening"]
    assert [c["videos"] for c in opening] == [[f"{m}/clips/001-opening.mp4"] for m in (0, 1, 2)]
    assert [re.search(r"seed (\d+)", c["text"]).group(1) for c in opening] == ["21", "22", "23"]  # type: ignore[union-attr]
    assert all("rendered" in c["text"] for c in opening)
    # the scenes every member shares: shown once, then "same clip as" the column before
    for scene in ("middle", "ending"):
        cells = page.rows[scene]
        assert cells[0]["videos"] == [f"0/clips/00{2 if scene == 'middle' else 3}-{scene}.mp4"]
        assert [c["videos"] for c in cells[1:]] == [[], []]
        assert "same clip as scenes.0.seed=21" in cells[1]["text"] and "cached" in cells[1]["text"]
        assert "same clip as scenes.0.seed=22" in cells[2]["text"]


def test_the_sweep_page_links_only_relative_files_and_survives_a_copy(sweep, tmp_path):
    copy = tmp_path / "elsewhere" / "sweep"
    shutil.copytree(sweep, copy)
    page = _page(copy / "index.html")
    assert page.links
    for link in page.links:
        assert "://" not in link and not link.startswith("/"), link
        assert (copy / unquote(link)).is_file(), link


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_the_sweep_page_plays_every_video_in_chromium(sweep, tmp_path):
    browser = Browser(tmp_path / "profile")
    try:
        open_page(browser, sweep / "index.html")
        results = play_all(browser)
        assert len(results) == 3 + 3 + 1 + 1  # three films, three openings, middle and ending once
        failed = [r for r in results if not r["ok"]]
        assert not failed, f"videos that did not play: {failed}"
        shot = screenshot(browser, "sweep.png", full_page=True)
        errors = console_errors(browser)
        assert not errors, f"console errors: {errors}"
    finally:
        browser.close()
    assert shot.stat().st_size > 1000


def test_compare_builds_the_same_page_for_any_runs(tmp_path):
    """Yesterday's run and today's, each with its own overrides, compared into a third folder."""
    runs = []
    for prompt in ("dawn", "dusk"):
        run_dir = tmp_path / "outputs" / prompt
        proc = _wanbatch(
            "--config-dir",
            str(SWEEP),
            f"scenes.1.prompt={prompt}",
            "report=true",
            f"cache.dir={tmp_path / 'cache'}",
            f"hydra.run.dir={run_dir}",
            "executor.progress=none",
        )
        assert proc.returncode == 0, proc.stderr
        runs.append(run_dir)
    out = tmp_path / "review"
    proc = _wanbatch("compare", *map(str, runs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"comparison of 2 runs: {out / 'index.html'}" in proc.stdout
    page = _page(out / "index.html")
    assert page.headings == ["scenes.1.prompt=dawn", "scenes.1.prompt=dusk"]
    # the opening is the same cache entry in both runs; the middle (and the ending chained to it) are not
    assert [c["videos"] for c in page.rows["opening"]] == [["../outputs/dawn/clips/001-opening.mp4"], []]
    assert [c["videos"] for c in page.rows["middle"]] == [
        ["../outputs/dawn/clips/002-middle.mp4"],
        ["../outputs/dusk/clips/002-middle.mp4"],
    ]
    for link in page.links:
        assert (out / unquote(link)).is_file(), link
    assert '<a href="../outputs/dawn/index.html">' in (out / "index.html").read_text()


def test_compare_refuses_a_folder_that_is_not_a_run(tmp_path):
    proc = _wanbatch("compare", str(tmp_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert f"`RUN_DIR` = {str(tmp_path)!r} is not allowed; a run folder holding manifest.json" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_run_with_takes_gets_a_row_per_take(compose_demo, run_cfg, tmp_path):
    code, one, _ = run_cfg(compose_demo())
    code2, three, _ = run_cfg(compose_demo("+scenes.1.takes=3", "+scenes.1.pick=3"))
    assert code == code2 == 0
    page = _page(write_comparison([one, three], tmp_path / "page"))
    assert [k for k in page.rows if k.startswith("sunrise")] == ["sunrise", "sunrise#2", "sunrise#3"]
    assert page.rows["sunrise"][1]["videos"] == []  # take 1 is the one-take run's clip: the same cache entry
    assert page.rows["sunrise#2"][0]["text"].strip() == "not in this run"
    assert "picked" in page.rows["sunrise#3"][1]["text"] and "picked" not in page.rows["sunrise#2"][1]["text"]


def test_the_sweep_page_takes_only_this_sweeps_members(tmp_path):
    """A fixed `hydra.sweep.dir` may hold members of an earlier, larger sweep: they are not this sweep's."""
    for name, started in (("0", 100.0), ("1", 100.5), ("2", 50.0), ("10", 101.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps({"started": started, "scenes": []}))
    assert sweep_members(tmp_path, since=99.9) == [tmp_path / "0", tmp_path / "1", tmp_path / "10"]
