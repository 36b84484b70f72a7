"""Never pay twice, never pass a budget (issue 13, items 1-3), against the fake provider over real sockets:
a GMI submit whose answer is lost, whatever the request list answers; what a run will cost and the budget
that stops it before any request; bursts of submits, and the errors that prove a submit never left."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from wanbatch.backends import get_backend_class
from wanbatch.backends.remote.base import AmbiguousSubmit
from wanbatch.cache.store import Cache
from wanbatch.config.load import load_config
from wanbatch.config.schema import EncodeConfig, ProjectConfig, WanbatchConfig
from wanbatch.core.backend import RenderContext
from wanbatch.core.plan import make_plan
from wanbatch.core.price import Price, tier_of
from wanbatch.core.project import load_project
from wanbatch.errors import Issue
from wanbatch.runs.run import run_project
from wanbatch.testing.fakeprovider import FakeProvider

import remote_fixtures as rf
from remote_fixtures import *  # noqa: F403 - fixtures

GMI_MODEL = rf.MODEL["gmi_wan21_i2v"]
GMI = {"id": "eagle", "backend": "gmi_wan21_i2v", "prompt": "An eagle.", "image": "first.png", "seed": 2}
NOVITA = {"id": "fox", "prompt": "A fox.", "seed": 1}
FAST_POLL = "{initial_s:0.1,interval_s:0.1,backoff:1.5,max_interval_s:0.4,min_interval_s:0.05}"


def stats(fake: FakeProvider, what: str) -> int:
    return int(fake.stats()["total"].get(what, 0))


def project(tmp_path: Path, assets: Path, scenes: list[dict[str, Any]], **top: Any) -> Path:
    """A project file of `scenes` beside copies of the test assets."""
    folder = tmp_path / "proj"
    folder.mkdir(exist_ok=True)
    for f in assets.iterdir():
        if f.is_file() and not (folder / f.name).exists():
            (folder / f.name).write_bytes(f.read_bytes())
    doc = {"defaults": ["wanbatch", "_self_"], "project": {"name": "spend"}, "scenes": scenes, **top}
    (folder / "project.yaml").write_text(json.dumps(doc))
    return folder / "project.yaml"


def at_fake(fake: FakeProvider, cache: Path, *names: str) -> list[str]:
    """Overrides pointing every named backend at the fake, with short polls (the default is Novita)."""
    out = [
        "backend=novita_wan21_t2v",
        f"backend.base_url={fake.url}",
        f"backend.poll={FAST_POLL}",
        f"cache.dir={cache}",
        "executor.progress=none",
    ]
    for name in names:
        out += [f"++backends.{name}.base_url={fake.url}", f"++backends.{name}.poll={FAST_POLL}"]
    return out


def run(cfg_file: Path, overrides: list[str], run_dir: Path) -> tuple[int, str, dict[str, Any] | None]:
    out = io.StringIO()
    code = run_project(load_config(cfg_file, overrides), run_dir, cfg_file.parent, out=out).exit_code
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").exists() else None
    return code, out.getvalue(), manifest


# -- 1. a lost GMI answer is paid once ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "settles"),
    [
        ("requests", True),  # the shape wanbatch reads, with its one match
        ("list", True),  # a bare list
        ("no_payload", True),  # no payload echo: model and time window decide
        ("data", False),  # a shape wanbatch does not read
        ("empty", False),  # a list that lags or leaves requests out
        ("no_model", False),  # items without the documented `model`
    ],
)
def test_item1_gmi_lost_answer_is_submitted_once_whatever_the_list_answers(
    remote: rf.Remote, shape: str, settles: bool
) -> None:
    remote.fake.configure(list_shape=shape)
    remote.fake.fault("drop", phase="submit")  # accepted, then the connection closes without an answer
    job, backend = remote.job(GMI)
    if settles:
        result = remote.render(job, backend)
        assert result.info["reconciled"] is True and result.request_id == remote.fake.jobs()[0]["id"]
    else:
        with pytest.raises(AmbiguousSubmit, match=r"may have been accepted.*Nothing was sent again"):
            remote.render(job, backend)
        entry = remote.cache.journal.get(job.key)
        assert entry is not None and entry["state"] == "ambiguous"
    assert stats(remote.fake, "submissions") == 1
    assert stats(remote.fake, "submit_attempts") == 1


def test_item1_gmi_lost_answer_when_the_list_itself_fails_is_ambiguous(remote: rf.Remote) -> None:
    remote.fake.fault("drop", phase="submit")
    remote.fake.fault("500", phase="list", times=-1)
    job, backend = remote.job(GMI)
    with pytest.raises(AmbiguousSubmit, match=r"listing GMI Cloud's requests failed"):
        remote.render(job, backend)
    assert stats(remote.fake, "submit_attempts") == 1


def test_item1_gmi_lost_answer_with_two_matching_requests_is_ambiguous(remote: rf.Remote, assets: Path) -> None:
    # Another request with the same plain fields was made a moment before (by hand, or another tool): the list
    # cannot tell which is this scene's, so neither is taken.
    payload = {"prompt": "An eagle.", "video_length": 5, "prompt_extend": False, "seed": 2}
    image = base64.b64encode((assets / "last.png").read_bytes()).decode()
    url = f"{remote.fake.url}/api/v1/ie/requestqueue/apikey/requests"
    headers = {"Authorization": f"Bearer {rf.KEYS['GMI_API_KEY']}"}
    body = {"model": GMI_MODEL, "payload": {**payload, "path_to_image": image}}
    assert httpx.post(url, json=body, headers=headers).status_code == 200
    remote.fake.fault("drop", phase="submit")
    job, backend = remote.job(GMI)
    with pytest.raises(AmbiguousSubmit, match=r"2 requests of .* match .*cannot tell which"):
        remote.render(job, backend)
    assert stats(remote.fake, "submissions") == 2  # the other one and this scene's, each once


def test_item1_gmi_list_match_ignores_requests_other_jobs_hold(remote: rf.Remote) -> None:
    # Two scenes alike but for their image: the first is journalled under its id, so the second's lost
    # answer is matched to the one request left.
    first, backend = remote.job(GMI)
    remote.render(first, backend)
    remote.cache.journal.record(
        first.key, backend="gmi_wan21_i2v", provider="gmi", request_id=remote.fake.jobs()[0]["id"]
    )
    remote.fake.fault("drop", phase="submit")
    second, backend2 = remote.job({**GMI, "image": "last.png"})
    result = remote.render(second, backend2)
    assert result.info["reconciled"] and result.request_id == remote.fake.jobs()[1]["id"]


def test_item1_ambiguous_scene_reports_time_and_payload_and_waits_for_the_user(
    fake: FakeProvider, api_keys: dict[str, str], assets: Path, tmp_path: Path
) -> None:
    fake.configure(list_shape="data")
    fake.fault("drop", phase="submit", model=GMI_MODEL)
    cfg_file = project(tmp_path, assets, [GMI, NOVITA])
    args = at_fake(fake, tmp_path / "cache", "gmi_wan21_i2v")
    code, out, manifest = run(cfg_file, args, tmp_path / "run1")
    assert code == 1 and manifest is not None
    eagle = next(s for s in manifest["scenes"] if s["id"] == "eagle")
    assert eagle["status"] == "failed"
    amb = eagle["info"]["ambiguous_submit"]
    assert amb["submitted_at_utc"].endswith("UTC") and amb["model"] == GMI_MODEL
    assert amb["payload"]["prompt"] == "An eagle." and amb["payload"]["seed"] == 2
    assert amb["payload"]["path_to_image"].startswith("<") and "sha256" in amb["payload"]["path_to_image"]
    assert f"failed: scene `eagle`: The submit to GMI Cloud at {amb['submitted_at_utc']}" in out
    assert '"prompt": "An eagle."' in out and "resubmit_ambiguous=[eagle]" in out
    # A rerun sends nothing for it (the fox is cached), and still fails it.
    code, out, manifest = run(cfg_file, args, tmp_path / "run2")
    assert code == 1 and "An earlier submit" in out
    assert stats(fake, "submit_attempts") == 2  # the eagle once, the fox once
    # The user checked: it was not accepted after all. Now, and only now, it goes again.
    fake.reset()
    code, out, manifest = run(cfg_file, [*args, "resubmit_ambiguous=[eagle]"], tmp_path / "run3")
    assert code == 0 and stats(fake, "submissions") == 1
    assert manifest is not None and "resubmit_ambiguous" in manifest["scenes"][0]["info"]["notes"][0]


def test_item1_resubmit_ambiguous_must_name_scenes_of_the_project(
    fake: FakeProvider, api_keys: dict[str, str], assets: Path, tmp_path: Path
) -> None:
    cfg_file = project(tmp_path, assets, [NOVITA])
    code, _, _ = run(cfg_file, [*at_fake(fake, tmp_path / "cache"), "resubmit_ambiguous=[fax]"], tmp_path / "run")
    assert code == 2 and fake.stats()["total"] == {} and not (tmp_path / "run").exists()


@pytest.mark.parametrize("backend", ["novita_wan21_t2v", "gmi_wan21_i2v"])
def test_item1_a_process_killed_mid_submit_is_not_submitted_again(
    fake: FakeProvider, api_keys: dict[str, str], assets: Path, tmp_path: Path, backend: str
) -> None:
    scene = NOVITA if backend == "novita_wan21_t2v" else GMI
    cfg_file = project(tmp_path, assets, [scene])
    args = at_fake(fake, tmp_path / "cache", "gmi_wan21_i2v")
    fake.fault("slow", phase="submit", delay=120)  # accepted; its answer never comes while the process lives
    first = subprocess.Popen(
        [*rf_cli(), "--config-dir", str(cfg_file.parent), *args, f"hydra.run.dir={tmp_path / 'run1'}"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while stats(fake, "submissions") < 1:  # the state we wait for: the provider has the job
        assert first.poll() is None, first.communicate()[0].decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    code, out, manifest = run(cfg_file, args, tmp_path / "run2")
    if backend == "gmi_wan21_i2v":  # found in the request list: attached to, not sent again
        assert code == 0 and manifest is not None and manifest["scenes"][0]["request_id"] == fake.jobs()[0]["id"]
    else:
        assert code == 1 and "An earlier submit to Novita AI" in out and "resubmit_ambiguous=[fox]" in out
    assert stats(fake, "submit_attempts") == 1 and stats(fake, "submissions") == 1


def rf_cli() -> list[str]:
    exe = shutil.which("wanbatch")
    return [exe] if exe else [sys.executable, "-m", "wanbatch.cli"]


# -- 2. price and budget ------------------------------------------------------------------------------
PRICED = [
    NOVITA,  # 5 s at 480P
    {"id": "tower", "backend": "gmi_wan27_i2v", "prompt": "A tower.", "resolution": "720P", "duration": 4, "seed": 3},
    {"id": "card", "backend": "preview", "prompt": "Title.", "duration": 2.0},
]


def priced(fake: FakeProvider, cache: Path, *extra: str) -> list[str]:
    return [
        *at_fake(fake, cache, "gmi_wan27_i2v"),
        "backend.price_per_second=0.05",
        "++backends.gmi_wan27_i2v.price_per_second={720P: 0.1, 1080P: 0.2}",
        *extra,
    ]


def test_item2_dry_run_shows_the_estimated_cost_per_backend_and_in_total(
    fake: FakeProvider, api_keys: dict[str, str], assets: Path, tmp_path: Path
) -> None:
    cfg_file = project(tmp_path, assets, [*PRICED, {**PRICED[1], "id": "tower_hd", "resolution": "1080P"}])
    code, out, _ = run(cfg_file, priced(fake, tmp_path / "cache", "dry_run=true"), tmp_path / "run")
    assert code == 0
    # 5 s x $0.05 on Novita; 4 s x $0.10 (720P) + 4 s x $0.20 (1080P) on GMI; the animatic is free
    assert "cost: novita_wan21_t2v: 1 to render, 5.0 s of video, $0.25" in out
    assert "cost: gmi_wan27_i2v: 2 to render, 8.0 s of video, $1.20" in out
    assert "cost: preview: 1 to render, 2.0 s of video, $0.00" in out
    assert "est. cost $1.45)" in out
    assert fake.stats()["total"] == {} and not (tmp_path / "run").exists()
    # Without a price for GMI, its part is unknown, and the dry run says so.
    code, out, _ = run(
        cfg_file, [*at_fake(fake, tmp_path / "cache", "gmi_wan27_i2v"), "dry_run=true"], tmp_path / "run"
    )
    assert "cost: gmi_wan27_i2v: 2 to render, 8.0 s of video, unknown" in out
    assert "est. cost $0.00 + unknown (gmi_wan27_i2v, novita_wan21_t2v without a price)" in out


def test_item2_a_budget_below_the_estimate_stops_the_run_before_any_request(
    fake: FakeProvider, api_keys: dict[str, str], assets: Path, tmp_path: Path
) -> None:
    cfg_file = project(tmp_path, assets, PRICED)
    err = io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        code, _, _ = run(cfg_file, priced(fake, tmp_path / "cache", "budget=0.5"), tmp_path / "run")
    assert code == 2
    assert "`budget` = 0.5 is not allowed; at least the estimated $0.65 of this run" in err.getvalue()
    assert fake.stats()["total"] == {}  # not one request
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    # An unknown price cannot be held to a budget either.
    with contextlib.redirect_stderr(err):
        code, _, _ = run(
            cfg_file, [*at_fake(fake, tmp_path / "cache", "gmi_wan27_i2v"), "budget=100"], tmp_path / "run"
        )
    assert code == 2 and "has no `price_per_second`" in err.getvalue() and fake.stats()["total"] == {}


def test_item2_a_run_within_budget_records_its_estimates_and_cached_scenes_cost_nothing(
    fake: FakeProvider, api_keys: dict[str, str], assets: Path, tmp_path: Path
) -> None:
    cfg_file = project(tmp_path, assets, PRICED)
    code, _, manifest = run(cfg_file, priced(fake, tmp_path / "cache", "budget=0.65"), tmp_path / "run1")
    assert code == 0 and manifest is not None
    est = {s["id"]: s["estimated_cost"] for s in manifest["scenes"]}
    assert est == {"fox": pytest.approx(0.25), "tower": pytest.approx(0.4), "card": 0.0}
    assert manifest["cost"]["estimated_total"] == pytest.approx(0.65) and manifest["cost"]["budget"] == 0.65
    assert manifest["cost"]["by_backend"]["gmi_wan27_i2v"] == {
        "to_render": 1,
        "seconds": 4.0,
        "cost": 0.4,
        "unknown": 0,
    }
    # Everything is cached now: the estimate is 0, and a budget of 0 lets the rerun through.
    code, out, manifest = run(cfg_file, priced(fake, tmp_path / "cache", "budget=0"), tmp_path / "run2")
    assert code == 0 and manifest is not None and manifest["cost"]["estimated_total"] == 0
    assert "est. cost $0.00 (nothing to render) (budget $0.00)" in out
    assert stats(fake, "submissions") == 2


def test_item2_price_per_second_is_checked(tmp_path: Path) -> None:
    issues: list[Issue] = []
    assert Price.parse(None, "p", issues).of(5, "720P") is None
    assert Price.parse(0.05, "p", issues).of(5, "480P") == pytest.approx(0.25)
    by_tier = Price.parse({"720p": 0.05, "1080P": 0.08}, "p", issues)
    assert (by_tier.of(10, "720P"), by_tier.of(10, "1080P"), by_tier.of(10, "480P")) == (0.5, 0.8, None)
    assert issues == []
    Price.parse(-1, "backends.x.price_per_second", issues)
    Price.parse({"4K": 1.0, "720P": "cheap"}, "backends.x.price_per_second", issues)
    assert [i.field for i in issues] == [
        "backends.x.price_per_second",
        "backends.x.price_per_second.4K",
        "backends.x.price_per_second.720P",
    ]
    assert (tier_of(832, 480), tier_of(1280, 704), tier_of(1920, 1080), tier_of(160, 96)) == (
        "480P",
        "720P",
        "1080P",
        "480P",
    )


# -- 3. bursts --------------------------------------------------------------------------------------
def test_item3_fifty_submits_open_connections_gradually(
    fake: FakeProvider, api_keys: dict[str, str], assets: Path, tmp_path: Path
) -> None:
    # Answers take 0.2 s: without a ramp, all fifty connections open before the first answer comes back
    fake.configure(response_delay_s=0.2)
    scenes = [{"id": f"s{i:02d}", "prompt": f"A fox, take {i}.", "seed": i} for i in range(50)]
    cfg_file = project(tmp_path, assets, scenes)
    args = [
        *at_fake(fake, tmp_path / "cache"),
        "backend.max_in_flight=50",
        "backend.requests_per_second=null",
        "executor.concurrency=50",
        "stitch.enabled=false",
        "report=false",
    ]
    code, _, _ = run(cfg_file, args, tmp_path / "run")
    assert code == 0 and stats(fake, "submissions") == 50 and stats(fake, "submit_attempts") == 50
    # Each connection opened for an API call came while at most 2 + (API answers so far) calls could be in
    # progress: the client started with two, and took one more for every answer it had. (Connections opened
    # for a download are not the ramp's: they are left out, as are the answers to downloads.)
    answers = opened = 0
    for what, conn in list(fake.state.timeline):
        if what == "answer":
            answers += 1
        elif what == "open" and fake.state.opened_for.get(conn) != "download":
            opened += 1
            assert opened <= 2 + answers, f"connection {opened} opened after only {answers} answers"
    assert opened >= 2


def test_item3_a_refused_connection_on_submit_is_retried_and_submitted_once(
    api_keys: dict[str, str], assets: Path, tmp_path: Path
) -> None:
    with socket.socket() as s:  # a port where nothing listens yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    late = FakeProvider(port=port, latency_s=0.1)
    attempts: list[str] = []

    def hook(request: httpx.Request) -> None:  # the provider comes up just before the second attempt
        attempts.append(str(request.url))
        if len(attempts) == 2:
            late.start()

    backend = get_backend_class("novita_wan21_t2v")(
        rf.backend_config("novita_wan21_t2v", f"http://127.0.0.1:{port}"),
        client=httpx.Client(event_hooks={"request": [hook]}),
    )
    cache = Cache(tmp_path / "cache")
    try:
        cfg = WanbatchConfig(project=ProjectConfig(name="t"), backend=backend.config, scenes=[NOVITA])
        plan = make_plan(load_project(cfg, assets, {backend.name: backend.config}), {backend.name: backend})
        ctx = RenderContext(workdir=tmp_path, journal=cache.journal, encode=EncodeConfig())
        result = backend.render(plan.jobs[0], ctx)
        assert result.info["submits"] == 1 and result.info["retries"] == 1
        assert late.stats()["submissions"] == {"wan2.1-t2v": 1}
        assert attempts[0].startswith(f"http://127.0.0.1:{port}/v3/async/wan-t2v")
    finally:
        backend.close()
        cache.close()
        late.stop()


@pytest.fixture(scope="module")
def big_first_frame(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 MB PNG of noise: its request body cannot fit in the kernel's socket buffers (4 MB at most on Linux),
    so a server that resets after the headers always cuts it off mid-write."""
    folder = tmp_path_factory.mktemp("big")
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "first.png", compress_level=0)
    return folder


def test_item3_a_reset_before_the_body_was_written_is_retried_and_submitted_once(
    api_keys: dict[str, str], big_first_frame: Path, tmp_path: Path
) -> None:
    with FakeProvider(latency_s=0.1, recv_buffer=16384) as fake:
        fake.fault("reset_before_body", phase="submit")
        remote = rf.Remote(fake, big_first_frame, tmp_path)
        try:
            job, backend = remote.job(GMI)
            result = remote.render(job, backend)
        finally:
            remote.close()
        assert result.info["submits"] == 1 and result.info["retries"] == 1 and not result.info["reconciled"]
        assert fake.stats()["submissions"] == {GMI_MODEL: 1}
        assert fake.stats()["faults"] == {"reset_before_body": 1}


@pytest.mark.parametrize("kind", ["reset", "drop"])
def test_item3_a_reset_after_the_body_was_written_is_never_sent_again(remote: rf.Remote, kind: str) -> None:
    remote.fake.fault(kind, phase="submit")
    job, backend = remote.job(NOVITA)
    with pytest.raises(AmbiguousSubmit, match=r"after the request was sent"):
        remote.render(job, backend)
    assert stats(remote.fake, "submit_attempts") == 1 and stats(remote.fake, "submissions") == 1


def test_item3_without_a_ramp_all_calls_may_start_at_once(remote: rf.Remote) -> None:
    # `connection_ramp: null` turns the ramp off (and the default is checked above).
    job, backend = remote.job(NOVITA, connection_ramp=None)
    assert backend.api.ramp.start is None
    remote.render(job, backend)
    _, backend2 = remote.job(NOVITA)
    assert backend2.api.ramp.start == 2


def test_item1_wanbatch_cache_ambiguous_lists_what_to_check(
    remote: rf.Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    from wanbatch.cli.cache import main as cache_main

    remote.fake.fault("drop", phase="submit")
    job, backend = remote.job(NOVITA)
    with pytest.raises(AmbiguousSubmit):
        remote.render(job, backend)
    assert cache_main(["ambiguous", "--dir", str(remote.cache.dir)]) == 0
    out = capsys.readouterr().out
    assert "fox  novita_wan21_t2v  wan2.1-t2v  sent " in out and '"prompt": "A fox."' in out
    assert "1 ambiguous submits" in out and "resubmit_ambiguous=[fox]" in out
    assert cache_main(["ambiguous", "--dir", str(remote.cache.dir), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["scene"] == "fox" and row["payload_summary"]["seed"] == 1 and row["submitted_at_utc"].endswith("UTC")
