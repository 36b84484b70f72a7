"""The fake provider on its own: the five protocols as documented, payload checks, faults, control API,
the command line, and 200 concurrent jobs through real backends."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from wanbatch.av.ffmpeg import probe
from wanbatch.testing.fakeprovider import FakeProvider

import remote_fixtures as rf
from remote_fixtures import *  # noqa: F403 - fixtures

AUTH = {"Authorization": "Bearer any-key"}
GMI = "/api/v1/ie/requestqueue/apikey/requests"


@pytest.fixture
def http(fake: FakeProvider) -> Any:
    with httpx.Client(base_url=fake.url, headers=AUTH, timeout=5) as client:
        yield client


def png_data(assets: Path) -> str:
    return rf.data_uri(assets / "first.png")


def wait_done(http: httpx.Client, url: str, params: dict[str, str] | None, done: Any) -> dict[str, Any]:
    """Poll until `done(answer)`: a state, however long a busy machine takes to get there (up to a minute)."""
    deadline = time.monotonic() + 60
    while True:
        data = http.get(url, params=params).json()
        if done(data):
            return data
        assert time.monotonic() < deadline, f"never done: {data}"
        time.sleep(0.05)


def test_gmi_protocol(http: httpx.Client, fake: FakeProvider, assets: Path) -> None:
    body = {
        "model": "Wan-AI_Wan2.1-I2V-14B-720P",
        "payload": {"prompt": "p", "path_to_image": png_data(assets), "video_length": 10, "seed": 4},
    }
    hold = fake.hold("result")  # the job stays in progress until released, however late the first poll comes
    sub = http.post(GMI, json=body).json()
    assert set(sub) == {"request_id", "model", "status", "created_at", "updated_at", "queued_at"}
    assert sub["status"] == "queued"
    first = http.get(f"{GMI}/{sub['request_id']}").json()
    assert first["status"] in ("queued", "processing") and first["outcome"] == {}
    hold.release()
    done = wait_done(http, f"{GMI}/{sub['request_id']}", None, lambda d: d["status"] == "success")
    assert done["payload"] == body["payload"] and set(done["outcome"]) == {"video_url", "thumbnail_image_url"}
    video = http.get(done["outcome"]["video_url"])
    assert video.headers["content-type"] == "video/mp4"
    listed = http.get(GMI, params={"model_id": body["model"]}).json()
    assert [r["request_id"] for r in listed["requests"]] == [sub["request_id"]]
    assert "Wan-AI_Wan2.1-I2V-14B-720P" in http.get("/api/v1/apikey/models").json()["model_ids"]
    # The docs' older path works too.
    assert http.post("/api/v1/apikey/requests", json=body).status_code == 200
    assert fake.stats()["submissions"] == {"Wan-AI_Wan2.1-I2V-14B-720P": 2}


def test_aiml_protocol(http: httpx.Client, assets: Path) -> None:
    body = {
        "model": "alibaba/wan-2-7-i2v",
        "prompt": "p",
        "image_url": "https://x.example/a.png",
        "resolution": "720p",
        "duration": 3,
    }
    sub = http.post("/v2/video/generations", json=body).json()
    assert set(sub) == {"id", "status"}
    done = wait_done(
        http,
        "/v2/video/generations",
        {"generation_id": sub["id"]},
        lambda d: d["status"] not in ("queued", "generating"),
    )
    assert done["status"] == "completed" and done["error"] is None
    data = http.get(done["video"]["url"]).content
    path = assets.parent / "aiml.mp4"
    path.write_bytes(data)
    p = probe(path)
    assert (p.width, p.height, round(p.duration or 0)) == (128, 72, 3)  # 1280x720 / 10, 3 s


def test_novita_protocol(http: httpx.Client, fake: FakeProvider) -> None:
    hold = fake.hold("result")
    sub = http.post(
        "/v3/async/wan-t2v", json={"model_name": "wan2.1-t2v", "prompt": "p", "width": 480, "height": 832}
    ).json()
    assert set(sub) == {"task_id"}
    first = http.get("/v3/async/task-result", params={"task_id": sub["task_id"]}).json()
    assert first["task"]["status"] in ("TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING")
    assert 0 < first["task"]["eta"] <= 0.1 and first["videos"] == []  # latency 0.1 s: never more than that
    hold.release()
    done = wait_done(
        http,
        "/v3/async/task-result",
        {"task_id": sub["task_id"]},
        lambda d: d["task"]["status"] == "TASK_STATUS_SUCCEED",
    )
    (video,) = done["videos"]
    assert video["video_type"] == "mp4" and video["video_url_ttl"] == "3600"


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        (
            GMI,
            {"model": "Wan-AI_Wan2.1-I2V-14B-720P", "payload": {"prompt": "p"}},
            "`payload.path_to_image` is required",
        ),
        (
            GMI,
            {
                "model": "Wan-AI_Wan2.1-I2V-14B-720P",
                "payload": {"prompt": "p", "path_to_image": "bm90IGFuIGltYWdl", "video_length": 7},
            },
            "`payload.path_to_image` must be base64 image data (not a PNG",
        ),
        (
            GMI,
            {
                "model": "Wan-AI_Wan2.1-FLF2V-14B-720P",
                "payload": {"prompt": "p", "first_frame_image": "https://a", "last_frame_image": "x"},
            },
            "`payload.first_frame_image` must be base64 image data",
        ),
        (
            GMI,
            {"model": "wan2.7-i2v", "payload": {"duration": 16, "resolution": "480P", "first_frame": "a.png"}},
            "`payload.first_frame` must be an http(s) URL",
        ),
        (GMI, {"model": "wan2.7-i2v", "payload": {"seed": -1}}, "`payload.seed` must be an integer from 0"),
        (GMI, {"model": "nope", "payload": {}}, "`model` must be one of"),
        ("/v2/video/generations", {"model": "alibaba/wan-2-7-i2v", "prompt": "p"}, "`image_url` is required"),
        (
            "/v2/video/generations",
            {"model": "alibaba/wan-2-7-i2v", "prompt": "p", "image_url": "https://a", "resolution": "720P"},
            "`resolution` must be one of 720p, 1080p",
        ),
        (
            "/v3/async/wan-t2v",
            {"model_name": "wan2.1-t2v", "prompt": "p", "width": 832, "height": 832},
            "must be one of",
        ),
        (
            "/v3/async/wan-t2v",
            {"model_name": "wan2.1-t2v", "prompt": "p", "steps": 41, "duration": 5},
            "`duration` is not a known field",
        ),
        (
            "/v3/async/wan-t2v",
            {"model_name": "wan2.1-t2v", "prompt": "p", "guidance_scale": True},
            "`guidance_scale` must be a number",
        ),
    ],
)
def test_payloads_are_checked_as_documented(
    http: httpx.Client, fake: FakeProvider, path: str, body: dict[str, Any], error: str
) -> None:
    resp = http.post(path, json=body)
    assert resp.status_code == 400
    assert error in resp.json()["error"]["message"]
    assert fake.stats()["submissions"] == {}


def test_a_key_is_required_and_never_echoed(fake: FakeProvider) -> None:
    fake.configure(api_keys={"novita": "right"})
    body = {"model_name": "wan2.1-t2v", "prompt": "p"}
    for headers in ({}, {"Authorization": "Bearer wrong-key-xyz"}):
        resp = httpx.post(f"{fake.url}/v3/async/wan-t2v", json=body, headers=headers)
        assert resp.status_code == 401 and "NOVITA_API_KEY" in resp.text and "wrong-key-xyz" not in resp.text
    assert (
        httpx.post(f"{fake.url}/v3/async/wan-t2v", json=body, headers={"Authorization": "Bearer right"}).status_code
        == 200
    )


def test_status_faults_and_retry_after(http: httpx.Client, fake: FakeProvider) -> None:
    fake.fault("429", retry_after=7)
    fake.fault("503", phase="submit", retry_after=2)
    fake.fault("502", phase="submit")
    body = {"model_name": "wan2.1-t2v", "prompt": "p"}
    r429, r503, r502, ok = (http.post("/v3/async/wan-t2v", json=body) for _ in range(4))
    assert (r429.status_code, r429.headers["retry-after"]) == (429, "7")
    assert (r503.status_code, r503.headers["retry-after"]) == (503, "2")
    assert (r502.status_code, ok.status_code) == (502, 200)
    stats = fake.stats()
    assert stats["submit_attempts"] == {"wan2.1-t2v": 4} and stats["submissions"] == {"wan2.1-t2v": 1}
    assert stats["faults"] == {"429": 1, "503": 1, "502": 1}


def test_answer_faults(fake: FakeProvider) -> None:
    body = {"model_name": "wan2.1-t2v", "prompt": "p"}
    fake.fault("drop", phase="submit")
    fake.fault("malformed", phase="submit")
    fake.fault("slow", phase="submit", delay=600)  # until the test ends (reset): far past any read timeout
    # A generous timeout for the answers that come (a loaded machine may take seconds); a short read timeout
    # only for the one that never comes.
    with httpx.Client(base_url=fake.url, headers=AUTH, timeout=60) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/v3/async/wan-t2v", json=body)
        with pytest.raises(ValueError):
            http.post("/v3/async/wan-t2v", json=body).json()
    patient = httpx.Timeout(60, read=0.5)
    with httpx.Client(base_url=fake.url, headers=AUTH, timeout=patient) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/v3/async/wan-t2v", json=body)
    assert fake.stats()["submissions"] == {"wan2.1-t2v": 3}  # each was accepted before it misbehaved


@pytest.mark.parametrize(("kind", "status"), [("failed", "TASK_STATUS_FAILED"), ("cancelled", "TASK_STATUS_FAILED")])
def test_result_faults(http: httpx.Client, fake: FakeProvider, kind: str, status: str) -> None:
    fake.fault(kind, reason="nope")
    sub = http.post("/v3/async/wan-t2v", json={"model_name": "wan2.1-t2v", "prompt": "p"}).json()
    done = wait_done(
        http,
        "/v3/async/task-result",
        {"task_id": sub["task_id"]},
        lambda d: d["task"]["status"] not in ("TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING"),
    )
    assert (done["task"]["status"], done["task"]["reason"], done["videos"]) == (status, "nope", [])


def test_download_faults(http: httpx.Client, fake: FakeProvider) -> None:
    sub = http.post("/v3/async/wan-t2v", json={"model_name": "wan2.1-t2v", "prompt": "p"}).json()
    done = wait_done(
        http,
        "/v3/async/task-result",
        {"task_id": sub["task_id"]},
        lambda d: d["task"]["status"] == "TASK_STATUS_SUCCEED",
    )
    url = done["videos"][0]["video_url"]
    whole = http.get(url).content
    fake.fault("404")
    assert http.get(url).status_code == 404
    fake.fault("truncate")
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(url)
    fake.fault("truncate_unsized")
    assert len(http.get(url).content) == len(whole) // 2
    fake.fault("not_video")
    assert http.get(url).headers["content-type"] == "text/html"
    fake.fault("expired")
    assert http.get(url).status_code == 403
    assert http.get(url).status_code == 403  # expired for good
    assert fake.stats()["downloads"] == {"wan2.1-t2v": 7}


def test_a_job_s_clip_is_made_while_the_job_runs(http: httpx.Client, fake: FakeProvider) -> None:
    from wanbatch.testing.fakeprovider import video

    fake.configure(fps=5)  # a frame rate no other test uses: this clip is not made yet
    fake.hold("result")  # the job is not done until the test ends
    sub = http.post("/v3/async/wan-t2v", json={"model_name": "wan2.1-t2v", "prompt": "p", "seed": 3}).json()
    key = video._key(832, 480, 5, 3, 0.1, 5)
    deadline = time.monotonic() + 60
    while key not in video._clips:
        assert time.monotonic() < deadline, "the clip was never made"
        time.sleep(0.02)
    # made while the job is still running: its download will not wait for an encode
    status = http.get("/v3/async/task-result", params={"task_id": sub["task_id"]}).json()
    assert status["task"]["status"] in ("TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING")


def test_holds_keep_a_job_or_a_request_until_released(http: httpx.Client, fake: FakeProvider) -> None:
    body = {"model_name": "wan2.1-t2v", "prompt": "p"}
    job_hold = fake.hold("result", after_polls=3)
    task = http.post("/v3/async/wan-t2v", json=body).json()["task_id"]
    assert job_hold.wait_arrivals(1, timeout=60)
    seen = [http.get("/v3/async/task-result", params={"task_id": task}).json()["task"]["status"] for _ in range(3)]
    assert set(seen[:2]) <= {"TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING"}
    assert seen[2] == "TASK_STATUS_SUCCEED"  # released by its third poll, not by the clock
    url = http.get("/v3/async/task-result", params={"task_id": task}).json()["videos"][0]["video_url"]
    download = fake.hold("download")
    got: list[int] = []
    fetcher = threading.Thread(target=lambda: got.append(http.get(url).status_code))
    fetcher.start()
    assert download.wait_arrivals(1, timeout=30)
    assert got == [] and fetcher.is_alive()  # asked for, not answered
    download.release()
    fetcher.join(30)
    assert got == [200]
    # Over HTTP too, for a fake run from the command line.
    n = http.post("/_fake/holds", json={"phase": "result"}).json()["hold"]
    task = http.post("/v3/async/wan-t2v", json=body).json()["task_id"]
    assert http.get("/_fake/holds").json()[n]["arrivals"] == 1
    assert http.get("/v3/async/task-result", params={"task_id": task}).json()["task"]["status"] != "TASK_STATUS_SUCCEED"
    http.post("/_fake/release", json={"hold": n})
    wait_done(http, "/v3/async/task-result", {"task_id": task}, lambda d: d["task"]["status"] == "TASK_STATUS_SUCCEED")


def test_control_over_http(http: httpx.Client, fake: FakeProvider) -> None:
    assert http.post("/_fake/faults", json=[{"kind": "500", "phase": "poll", "times": 2}]).json() == {"ok": True}
    assert http.post("/_fake/settings", json={"latency_s": 0.05}).status_code == 200
    assert http.post("/_fake/faults", json={"kind": "teapot"}).status_code == 400
    assert http.post("/_fake/settings", json={"latency": 1}).status_code == 400
    assert fake.state.settings.latency_s == 0.05 and len(fake.state.faults) == 1
    http.post("/v3/async/wan-t2v", json={"model_name": "wan2.1-t2v", "prompt": "p"})
    assert http.get("/_fake/stats").json()["submissions"] == {"wan2.1-t2v": 1}
    assert http.get("/_fake/jobs").json()[0]["payload"]["prompt"] == "p"
    http.post("/_fake/reset")
    assert http.get("/_fake/stats").json()["total"] == {} and fake.state.settings.latency_s == 0.1


def test_users_can_run_it_from_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wanbatch.testing.fakeprovider",
            "--port",
            "0",
            "--latency",
            "0.1",
            "--fault",
            "503:poll:1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"fake provider on (http://\S+)", line)
        assert url, line
        body = {"model_name": "wan2.1-t2v", "prompt": "p"}
        task = httpx.post(f"{url[1]}/v3/async/wan-t2v", json=body, headers=AUTH).json()["task_id"]
        poll = httpx.get(f"{url[1]}/v3/async/task-result", params={"task_id": task}, headers=AUTH)
        assert poll.status_code == 503
        assert httpx.get(f"{url[1]}/_fake/stats").json()["submissions"] == {"wan2.1-t2v": 1}
    finally:
        proc.terminate()
        proc.wait(10)


def test_200_jobs_at_concurrency_50(remote: rf.Remote) -> None:
    """The benchmark's load (bench_remote times it), through the real backend and the local executor: every
    job renders once, and 50 are at the provider at once, never more."""
    from wanbatch.execute.local import LocalExecutor

    remote.fake.configure(latency_s=0.2)
    poll = {"initial_s": 0.2, "interval_s": 0.2, "backoff": 1.5, "max_interval_s": 1, "jitter": 0.2}
    scenes = [{"id": f"s{i:03d}", "prompt": f"shot {i}", "seed": i} for i in range(200)]
    plan = remote.plan(scenes, overrides={"novita_wan21_t2v": {"max_in_flight": 50, "poll": poll}})
    first_wave = remote.fake.hold("result")  # the first jobs wait until 50 are in, however slow the machine

    def release_when_full() -> None:
        first_wave.wait_arrivals(50, timeout=120)  # (with fewer allowed at once, the test fails below)
        first_wave.release()

    releaser = threading.Thread(target=release_when_full, daemon=True)
    releaser.start()
    outcomes = LocalExecutor(remote.cache, concurrency=50).run(plan)
    releaser.join(5)
    stats = remote.fake.stats()
    bad = [(o.status, o.error) for o in outcomes.values() if o.status != "rendered"]
    assert not bad, bad[:3]
    assert stats["submissions"] == {"wan2.1-t2v": 200}
    assert first_wave.arrivals == 50 and stats["max_active"]["novita"] == 50
