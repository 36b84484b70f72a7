"""A headless Chromium driven over the DevTools protocol on a pipe, for tests that open wanbatch's pages.

`--remote-debugging-pipe`: JSON messages separated by NUL bytes on file descriptors 3 and 4, so nothing
from PyPI is needed. Tests using it skip only where no Chromium is installed (Debian: apt-get install
chromium).
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

from conftest import CHECKOUT

ARTIFACTS = CHECKOUT / "test-artifacts"
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome")) if p), None)
NO_CHROMIUM = "no Chromium on PATH (Debian: apt-get install chromium)"


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


def open_page(browser: Browser, page: Path) -> None:
    """Navigate to a local page and wait until it has loaded."""
    browser.page("Runtime.enable")
    browser.page("Log.enable")
    browser.page("Page.enable")
    browser.page("Page.navigate", url=page.resolve().as_uri())
    browser.wait_for("Page.loadEventFired")


def evaluate(browser: Browser, expression: str, timeout: float = 30) -> Any:
    got = browser.page(
        "Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True, returnByValue=True
    )
    return got["result"].get("value")


def play_all(browser: Browser) -> list[dict[str, Any]]:
    """Play every <video> of the page until its clock moves; one result per video."""
    return list(evaluate(browser, PLAY_ALL, timeout=60))


def console_errors(browser: Browser) -> list[dict[str, Any]]:
    return [
        e
        for e in browser.events
        if (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
        or e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
    ]


def screenshot(browser: Browser, name: str, *, full_page: bool = False) -> Path:
    """A PNG of the page in test-artifacts/NAME (the whole page with `full_page`)."""
    params: dict[str, Any] = {"format": "png"}
    if full_page:
        metrics = browser.page("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        params["captureBeyondViewport"] = True
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    out.write_bytes(base64.b64decode(browser.page("Page.captureScreenshot", **params)["data"]))
    return out
