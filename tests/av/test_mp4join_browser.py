"""A film joined by its sample tables in a real browser: headless Chromium reads its length as the clips'
together and plays it across every joint to its end, with no media error."""

from __future__ import annotations

import pytest
from test_mp4join import tone_clip

from wanbatch.av.mp4join import join_mp4

from chromium import CHROMIUM, NO_CHROMIUM, Browser, console_errors, evaluate, open_page

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)

# seek near the end of each clip, play over its joint, and on to the film's end (fast: 4x)
PLAY_OVER_JOINTS = """
(async () => {
  const v = document.querySelector('video');
  v.muted = true;
  await new Promise((ok, bad) => {
    if (v.readyState >= 1) return ok();
    v.addEventListener('loadedmetadata', ok); v.addEventListener('error', () => bad('error ' + v.error.code));
  });
  const duration = v.duration;
  const crossed = [];
  for (const at of [0.8, 1.8]) {
    v.currentTime = at;
    await new Promise((ok) => v.addEventListener('seeked', ok, {once: true}));
    await v.play();
    await new Promise((ok) => {
      const tick = () => { if (v.currentTime > at + 0.4) { v.removeEventListener('timeupdate', tick); ok(); } };
      v.addEventListener('timeupdate', tick);
    });
    v.pause();
    crossed.push(v.currentTime);
  }
  v.playbackRate = 4;
  const ended = new Promise((ok) => v.addEventListener('ended', ok, {once: true}));
  await v.play();
  await ended;
  return {duration, crossed, ended: v.ended, error: v.error ? v.error.code : null,
          frames: v.getVideoPlaybackQuality().totalVideoFrames};
})()
"""


def test_a_joined_film_plays_over_its_joints_to_its_end_in_chromium(tmp_path):
    clips = [tone_clip(tmp_path / f"c{k}.mp4", freq=220 * (k + 1), seconds=1, size=(160, 96)) for k in range(3)]
    film = tmp_path / "film.mp4"
    assert join_mp4(clips, film)
    page = tmp_path / "film.html"
    page.write_text('<!doctype html><meta charset="utf-8"><video src="film.mp4" preload="auto"></video>')
    browser = Browser(tmp_path / "profile")
    try:
        open_page(browser, page)
        got = evaluate(browser, PLAY_OVER_JOINTS, timeout=60)
        errors = console_errors(browser)
    finally:
        browser.close()
    assert got["duration"] == pytest.approx(3.0, abs=0.02)
    assert got["crossed"][0] > 1.2 and got["crossed"][1] > 2.2  # past the first and the second joint
    assert got["ended"] and got["error"] is None
    assert not errors, f"console errors: {errors}"
