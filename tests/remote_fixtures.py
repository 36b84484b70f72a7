"""Fixtures of the remote-backend tests: one fake provider per session (reset for every test), API keys
that must never leak, fast poll and retry settings, tiny media, and plan/render helpers.

Test modules take the fixtures with `from remote_fixtures import *` (pytest finds fixtures among a
module's globals) and the helpers with `import remote_fixtures as rf`.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
import time
import wave
from collections.abc import Iterator, Mapping
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from wanbatch.av.encode import write_clip
from wanbatch.backends import get_backend_class
from wanbatch.backends.remote.base import RemoteBackend
from wanbatch.cache.store import Cache
from wanbatch.config import load
from wanbatch.config.backends import RemoteConfig
from wanbatch.config.schema import EncodeConfig, ProjectConfig, WanbatchConfig
from wanbatch.core.backend import RenderContext, RenderResult
from wanbatch.core.job import Job
from wanbatch.core.plan import Plan, make_plan
from wanbatch.core.project import load_project
from wanbatch.testing.fakeprovider import FakeProvider

REMOTE = ("gmi_wan21_i2v", "gmi_wan21_flf2v", "gmi_wan27_i2v", "aiml_wan27_i2v", "novita_wan21_t2v")
MODEL = {
    "gmi_wan21_i2v": "Wan-AI_Wan2.1-I2V-14B-720P",
    "gmi_wan21_flf2v": "Wan-AI_Wan2.1-FLF2V-14B-720P",
    "gmi_wan27_i2v": "wan2.7-i2v",
    "aiml_wan27_i2v": "alibaba/wan-2-7-i2v",
    "novita_wan21_t2v": "wan2.1-t2v",
}
# Distinctive values: a scan for them cannot match anything by chance.
KEYS = {
    "GMI_API_KEY": "gmi-TEST-KEY-4f9a1c2e7b5d",
    "AIML_API_KEY": "aiml-TEST-KEY-83d0e6b1a5f2",
    "NOVITA_API_KEY": "novita-TEST-KEY-2c7e9f4d1066",
}
# Short waits everywhere: the fake finishes a job in 0.1 s.
FAST: dict[str, Any] = {
    "poll": {
        "initial_s": 0.1,
        "interval_s": 0.05,
        "backoff": 1.5,
        "max_interval_s": 0.4,
        "min_interval_s": 0.05,
        "jitter": 0.1,
        "timeout_s": 20,
    },
    "retries": {
        "attempts": 4,
        "initial_s": 0.05,
        "max_wait_s": 0.2,
        "retry_after_max_s": 5,
        "total_s": 20,
        "reconcile_wait_s": 0.1,
    },
    "timeouts": {"connect_s": 2, "read_s": 1.5, "write_s": 2, "pool_s": 5, "download_s": 3},
    "requests_per_second": None,
    "max_in_flight": 8,
}

__all__ = ["api_keys", "assets", "fake", "fake_server", "remote"]


def backend_config(name: str, base_url: str, overrides: Mapping[str, Any] | None = None) -> RemoteConfig:
    """conf/backend/<name>.yaml through its schema, with FAST settings, pointed at `base_url`."""
    cfg = load.backend_config(name, FAST, {"base_url": base_url}, dict(overrides or {}))
    assert isinstance(cfg, RemoteConfig)
    return cfg


def data_uri(path: Path, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def write_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def scan_for_keys(root: Path) -> list[str]:
    """Files under `root` holding any test key (in any form a file could hold it)."""
    hits = []
    needles = [k.encode() for k in KEYS.values()]
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if any(n in data for n in needles):
                hits.append(str(p))
    return hits


class Recorder:
    """httpx event hook: every request the backend sends (method, URL, JSON body, headers)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.timed: list[tuple[float, httpx.Request]] = []  # (time.monotonic(), request)
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> None:
        with self._lock:
            self.requests.append(request)
            self.timed.append((time.monotonic(), request))

    def bodies(self, method: str = "POST") -> list[Any]:
        return [json.loads(r.content) for r in self.requests if r.method == method and "/_fake/" not in str(r.url)]

    def urls(self) -> list[str]:
        return [f"{r.method} {r.url}" for r in self.requests]


class Remote:
    """Plans scenes onto remote backends pointed at the fake, and renders jobs with a real journal."""

    def __init__(self, fake: FakeProvider, root: Path, tmp: Path):
        self.fake, self.root, self.tmp = fake, root, tmp
        self.recorder = Recorder()
        self.backends: list[RemoteBackend] = []
        self._n = count()

    @functools.cached_property
    def cache(self) -> Cache:
        return Cache(self.tmp / "cache")

    def client(self) -> httpx.Client:
        t = FAST["timeouts"]
        return httpx.Client(
            timeout=httpx.Timeout(t["read_s"], connect=t["connect_s"]), event_hooks={"request": [self.recorder]}
        )

    def backend(self, name: str, **overrides: Any) -> RemoteBackend:
        backend = get_backend_class(name)(backend_config(name, self.fake.url, overrides), client=self.client())
        assert isinstance(backend, RemoteBackend)
        self.backends.append(backend)
        return backend

    def plan(
        self,
        scenes: list[dict[str, Any]],
        *,
        default: str = "novita_wan21_t2v",
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Plan:
        """Validate and plan like a run does (raises ConfigError), with backends pointed at the fake."""
        used = {s.get("backend", default) for s in scenes} | {default}
        backends = {name: self.backend(name, **dict((overrides or {}).get(name, {}))) for name in used}
        cfg = WanbatchConfig(project=ProjectConfig(name="t"), backend=backends[default].config, scenes=scenes)
        project = load_project(cfg, self.root, {n: b.config for n, b in backends.items()})
        return make_plan(project, backends)  # type: ignore[arg-type]

    def job(self, scene: dict[str, Any], **overrides: Any) -> tuple[Job, RemoteBackend]:
        name = scene.get("backend", "novita_wan21_t2v")
        plan = self.plan([scene], default=name, overrides={name: overrides})
        backend = plan.backends[name]
        assert isinstance(backend, RemoteBackend)
        return plan.jobs[0], backend

    def context(self, cancel: threading.Event | None = None) -> RenderContext:
        workdir = self.tmp / f"work{next(self._n)}"
        workdir.mkdir()
        return RenderContext(
            workdir=workdir, journal=self.cache.journal, encode=EncodeConfig(), cancel=cancel or threading.Event()
        )

    def render(self, job: Job, backend: RemoteBackend, cancel: threading.Event | None = None) -> RenderResult:
        return backend.render(job, self.context(cancel))

    def close(self) -> None:
        for b in self.backends:
            b.close()
        if "cache" in self.__dict__:
            self.cache.close()


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeProvider]:
    with FakeProvider(latency_s=0.1) as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeProvider) -> Iterator[FakeProvider]:
    fake_server.reset()
    yield fake_server
    fake_server.reset()


@pytest.fixture
def api_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    return KEYS


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """first.png / last.png (480x400), tiny.png (100x80), voice.wav (4 s), short.wav (1 s), clip.mp4."""
    d = tmp_path_factory.mktemp("remote-assets")
    Image.new("RGB", (480, 400), (200, 40, 40)).save(d / "first.png")
    Image.new("RGB", (480, 400), (40, 40, 200)).save(d / "last.png")
    Image.new("RGB", (100, 80), (9, 9, 9)).save(d / "tiny.png")
    write_wav(d / "voice.wav", 4.0)
    write_wav(d / "short.wav", 1.0)
    frames = [np.full((32, 32, 3), i * 20, np.uint8) for i in range(8)]
    write_clip(frames, d / "clip.mp4", fps=8, settings=EncodeConfig(preset="ultrafast"))
    return d


@pytest.fixture
def remote(fake: FakeProvider, api_keys: dict[str, str], assets: Path, tmp_path: Path) -> Iterator[Remote]:
    r = Remote(fake, assets, tmp_path)
    yield r
    r.close()
