"""index.html in a real browser: headless Chromium opens it from file://, logs no error, shows every
scene card, and plays every <video>. A screenshot goes to test-artifacts/report.png.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages
separated by NUL bytes on file descriptors 3 and 4), so the test needs nothing from PyPI. It is skipped
only when no Chromium is installed (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wanbatch.av.encode import write_clip
from wanbatch.config.schema import EncodeConfig
from wanbatch.runs.report import write_report

from conftest import CHECKOUT

ARTIFACTS = CHECKOUT / "test-artifacts"
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome")) if p), None)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install chromium)")


def _to_fds_3_and_4(read_end: int, write_end: int) -> None:
    # through high numbers first, so neither end is overwritten if it already is 3 or 4
    high_r, high_w = fcntl.fcntl(read_end, fcntl.F_DUPFD, 10), fcntl.fcntl(write_end, fcntl.F_DUPFD, 10)
    os.dup2(high_r, 3)
    os.dup2(high_w, 4)


class Browser:
    """A headless Chromium and one page, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        assert CHROMIUM is not None
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
                "--mute-audio",
                "--window-size=1280,1600",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),  # kept open in the child after preexec_fn has put the pipe ends there
            preexec_fn=lambda: _to_fds_3_and_4(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, timeout: float = 30, session: bool = False, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result") or {})
            self.events.append(reply)

    def page(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        return self.call(method, timeout, session=True, **params)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._next(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _next(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return dict(json.loads(raw))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


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


PLAY_ALL = """
(async () => {
  const videos = Array.from(document.querySelectorAll('video'));
  const one = (v) => new Promise((resolve) => {
    const done = (ok, why) => resolve({src: v.getAttribute('src'), ok, why, readyState: v.readyState,
                                       error: v.error ? v.error.code : null});
    const timer = setTimeout(() => done(false, 'timeout'), 15000);
    v.muted = true;
    v.addEventListener('error', () => { clearTimeout(timer); done(false, 'error'); });
    v.addEventListener('timeupdate', () => {
      if (v.currentTime > 0) { clearTimeout(timer); v.pause(); done(true, 'played'); }
    });
    v.play().catch((e) => { clearTimeout(timer); done(false, 'play() rejected: ' + e); });
  });
  return await Promise.all(videos.map(one));
})()
"""


def test_report_loads_and_plays_in_chromium(tmp_path):
    run_dir = tmp_path / "run"
    manifest = make_run(run_dir)
    page_path = write_report(run_dir, manifest)
    browser = Browser(tmp_path / "profile")
    try:
        browser.page("Runtime.enable")
        browser.page("Log.enable")
        browser.page("Page.enable")
        browser.page("Page.navigate", url=page_path.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")

        cards = browser.page(
            "Runtime.evaluate",
            returnByValue=True,
            expression=("Array.from(document.querySelectorAll('article.scene')).map(a => a.dataset.scene)"),
        )["result"]["value"]
        assert cards == ["s0", "s1", "s2", "bad"]

        results = browser.page(
            "Runtime.evaluate", timeout=60, expression=PLAY_ALL, awaitPromise=True, returnByValue=True
        )["result"]["value"]
        assert len(results) == 4  # the film and three clips
        failed = [r for r in results if not r["ok"]]
        assert not failed, f"videos that did not play: {failed}"

        ARTIFACTS.mkdir(exist_ok=True)
        shot = browser.page("Page.captureScreenshot", format="png")["data"]
        (ARTIFACTS / "report.png").write_bytes(base64.b64decode(shot))

        errors = [
            e
            for e in browser.events
            if (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
            or e.get("method") == "Runtime.exceptionThrown"
            or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
        ]
        assert not errors, f"console errors: {errors}"
    finally:
        browser.close()
    assert (ARTIFACTS / "report.png").stat().st_size > 1000
