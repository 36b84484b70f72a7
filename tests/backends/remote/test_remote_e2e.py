"""End to end against the fake provider: recipes/remote_mix (all five backends in one film), and a run
killed with SIGKILL mid-flight that the next run finishes without submitting anything twice."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from wanbatch.av.ffmpeg import probe
from wanbatch.config.load import load_config
from wanbatch.runs.run import run_project
from wanbatch.testing.fakeprovider import FakeProvider

import remote_fixtures as rf
from conftest import CHECKOUT
from remote_fixtures import *  # noqa: F403 - fixtures

REPO = CHECKOUT
RECIPE = REPO / "recipes" / "remote_mix"
UPLOADING = ("aiml_wan27_i2v", "gmi_wan27_i2v")  # the recipe's backends that take only URLs
POLL = "{initial_s:0.2,interval_s:0.2,backoff:1.5,max_interval_s:0.5,min_interval_s:0.05}"


def overrides(url: str, cache: Path) -> list[str]:
    """Every backend of the recipe pointed at the fake, with short polls, uploading beside the cache."""
    out = [f"backend.base_url={url}", f"backend.poll={POLL}", f"cache.dir={cache}", "executor.progress=none"]
    for name in rf.REMOTE:
        if name != "novita_wan21_t2v":  # the project's default backend, configured above
            out += [f"++backends.{name}.base_url={url}", f"++backends.{name}.poll={POLL}"]
    uploads = cache.parent / "uploads"
    return out + [f"++backends.{name}.uploader.target=file://{uploads}" for name in UPLOADING]


def scenes(run_dir: Path) -> dict[str, dict[str, Any]]:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {s["id"]: s for s in manifest["scenes"]}


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    """The folder `overrides` uploads to (the tests' cache is tmp_path/cache)."""
    return tmp_path / "uploads"


def test_remote_mix_renders_one_film_from_all_five_backends(
    fake: FakeProvider, api_keys: dict[str, str], uploads: Path, tmp_path: Path
) -> None:
    fake.configure(latency_s=0.5)
    cfg = load_config(RECIPE / "project.yaml", overrides(fake.url, tmp_path / "cache"))
    code = run_project(cfg, tmp_path / "run1", RECIPE, out=io.StringIO()).exit_code
    assert code == 0
    got = scenes(tmp_path / "run1")
    assert {s["backend"] for s in got.values()} == set(rf.REMOTE)
    assert all(s["status"] == "rendered" and s["request_id"] and s["clip"] for s in got.values())
    stats = fake.stats()
    assert stats["submissions"] == {model: 1 for model in rf.MODEL.values()}
    polls = stats["total"]["polls"] / 5
    film = probe(tmp_path / "run1" / "film.mp4")
    assert film.has_video and film.duration == pytest.approx(5 + 5 + 5 + 5 + 4, abs=0.5)
    # The narration and the chained frame were uploaded for the URL-only providers, and sent as URLs.
    assert len(list(uploads.iterdir())) == 2
    sent = {j["model"]: j["payload"] for j in fake.jobs()}
    assert sent["wan2.7-i2v"]["first_frame"].startswith("http://127.0.0.1:8000/")
    assert sent["alibaba/wan-2-7-i2v"]["audio_url"].endswith(".wav")
    # Nothing anywhere holds a key.
    assert rf.scan_for_keys(tmp_path) == []

    # A second run is all cache hits: nothing is sent (no film or report needed to show it).
    again = dataclasses.replace(cfg, report=False, stitch=dataclasses.replace(cfg.stitch, enabled=False))
    code = run_project(again, tmp_path / "run2", RECIPE, out=io.StringIO()).exit_code
    assert code == 0
    assert {s["status"] for s in scenes(tmp_path / "run2").values()} == {"cached"}
    assert fake.stats()["submissions"] == stats["submissions"]
    print(f"\nremote_mix: {polls:.1f} polls per job")


def test_an_invalid_remote_project_exits_2_and_sends_nothing(
    fake: FakeProvider, api_keys: dict[str, str], uploads: Path, tmp_path: Path
) -> None:
    cfg = load_config(RECIPE / "project.yaml", [*overrides(fake.url, tmp_path / "cache"), "++scenes.1.duration=7"])
    assert run_project(cfg, tmp_path / "run", RECIPE, out=io.StringIO()).exit_code == 2
    assert fake.stats()["total"] == {}
    assert not (tmp_path / "cache").exists()


def _cli(*args: str) -> list[str]:
    exe = shutil.which("wanbatch")
    return [exe, *args] if exe else [sys.executable, "-m", "wanbatch.cli", *args]


def test_a_run_killed_mid_flight_is_finished_by_the_next_without_paying_twice(
    fake: FakeProvider, api_keys: dict[str, str], uploads: Path, tmp_path: Path
) -> None:
    held = fake.hold("result")  # the four first jobs stay at the provider until the first run is killed
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = ["--config-dir", str(RECIPE), "--config-name", "project", *overrides(fake.url, cache)]

    first = subprocess.Popen(
        _cli(*args, f"hydra.run.dir={tmp_path / 'run1'}"),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    # The four scenes without a parent are submitted at once; the chained finale waits for its parent.
    # Kill once each of the four has been polled (so journalled: the id is written before the first poll).
    deadline = time.monotonic() + 120
    while len(fake.jobs()) < 4 or any(j["polls"] < 1 for j in fake.jobs()):
        assert first.poll() is None, first.communicate()[0].decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    in_flight = {j["id"] for j in fake.jobs()}
    assert len(in_flight) == 4 and all(j["status"] in ("queued", "processing") for j in fake.jobs())
    held.release()  # they finish while "we" are down

    second = subprocess.run(
        _cli(*args, f"hydra.run.dir={tmp_path / 'run2'}"),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    got = scenes(tmp_path / "run2")
    assert all(s["status"] in ("rendered", "cached") for s in got.values())
    # The four killed jobs finish under the ids the first run journalled.
    finished = {sid: s["request_id"] for sid, s in got.items() if sid != "finale"}
    assert set(finished.values()) == in_flight
    assert any(s["info"].get("reattached") for s in got.values() if s["status"] == "rendered")
    # Server side: every job was submitted exactly once across both runs.
    assert fake.stats()["submissions"] == {model: 1 for model in rf.MODEL.values()}
    assert sum(fake.stats()["submit_attempts"].values()) == 5
    assert list(rf.Remote(fake, RECIPE, tmp_path).cache.journal.items()) == []
    assert rf.scan_for_keys(tmp_path) == []
    assert all(k not in second.stdout + second.stderr for k in rf.KEYS.values())


def test_the_storyboard_renders_on_a_remote_backend_by_switching_config(
    fake: FakeProvider, api_keys: dict[str, str], uploads: Path, tmp_path: Path
) -> None:
    """recipes/storyboard/remote.yaml: the same storyboard, its model scenes sent to GMI wan2.7-i2v
    (text, first frame, first/last pair, driving audio, a chained frame), stitched with the rest."""
    fake.configure(latency_s=0.3)
    storyboard = REPO / "recipes" / "storyboard"
    cfg = load_config(
        storyboard / "remote.yaml",
        [
            f"backend.base_url={fake.url}",
            f"backend.poll={POLL}",
            f"cache.dir={tmp_path / 'cache'}",
            "executor.progress=none",
            f"backend.uploader.target=file://{uploads}",
        ],
    )
    code = run_project(cfg, tmp_path / "run", storyboard, out=io.StringIO()).exit_code
    assert code == 0
    got = scenes(tmp_path / "run")
    remote = {sid for sid, s in got.items() if s["backend"] == "gmi_wan27_i2v"}
    assert remote == {"opening", "dawn", "harbour", "pier_walk", "storm", "song", "end"}
    assert all(got[sid]["status"] == "rendered" and got[sid]["request_id"] for sid in remote)
    assert fake.stats()["submissions"] == {"wan2.7-i2v": 7}
    sent = {j["payload"].get("prompt"): j["payload"] for j in fake.jobs()}
    storm = next(p for prompt, p in sent.items() if prompt and "lightning" in prompt.lower())
    assert storm["first_frame"].startswith("http://127.0.0.1:8000/") and storm["last_frame"].endswith(".png")
    assert any(p.get("driving_audio", "").endswith(".wav") for p in sent.values())
    assert (tmp_path / "run" / "film.mp4").is_file()
    assert rf.scan_for_keys(tmp_path) == []
