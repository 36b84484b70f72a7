"""index.html in a real browser: headless Chromium opens it from file://, logs no error, shows every
scene card, and plays every <video>. A screenshot goes to test-artifacts/report.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wanbatch.av.encode import write_clip
from wanbatch.config.schema import EncodeConfig
from wanbatch.runs.report import write_report

from chromium import CHROMIUM, NO_CHROMIUM, Browser, console_errors, evaluate, open_page, play_all, screenshot

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)


def make_run(run_dir: Path) -> dict:
    (run_dir / "clips").mkdir(parents=True)
    settings = EncodeConfig(preset="ultrafast", crf=23)  # H.264 yuv420p + AAC: what Chromium plays
    scenes = []
    for i, color in enumerate([(220, 60, 60), (60, 200, 90), (60, 90, 220)]):
        rel = f"clips/{i + 1:03d}-s{i}.mp4"
        frames = [np.full((96, 160, 3), color, np.uint8) for _ in range(16)]
        write_clip(frames, run_dir / rel, fps=16, settings=settings)
        scenes.append(
            {
                "id": f"s{i}",
                "status": "rendered",
                "clip": rel,
                "seed": i,
                "backend": "preview",
                "model": "preview",
                "prompt": f"scene <{i}> & more",
                "seconds": 0.5,
                "duration": 1.0,
                "cache_key": "0" * 64,
                "request_id": None,
                "error": None,
            }
        )
    scenes.append({"id": "bad", "status": "failed", "clip": None, "error": "RenderError: <boom>", "seed": 3})
    (run_dir / "film.mp4").write_bytes((run_dir / scenes[0]["clip"]).read_bytes())
    (run_dir / "manifest.json").write_text("{}")
    return {"project": "browser <test>", "scenes": scenes, "film": "film.mp4"}


def test_report_loads_and_plays_in_chromium(tmp_path):
    run_dir = tmp_path / "run"
    manifest = make_run(run_dir)
    page_path = write_report(run_dir, manifest)
    browser = Browser(tmp_path / "profile")
    try:
        open_page(browser, page_path)
        cards = evaluate(browser, "Array.from(document.querySelectorAll('article.scene')).map(a => a.dataset.scene)")
        assert cards == ["s0", "s1", "s2", "bad"]

        results = play_all(browser)
        assert len(results) == 4  # the film and three clips
        failed = [r for r in results if not r["ok"]]
        assert not failed, f"videos that did not play: {failed}"

        shot = screenshot(browser, "report.png")
        errors = console_errors(browser)
        assert not errors, f"console errors: {errors}"
    finally:
        browser.close()
    assert shot.stat().st_size > 1000
