"""The remote life cycle: journal before polling, re-attach, cancel, limits, polling cost, key hygiene."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

import httpx
import pytest

from wanbatch.backends.remote.limits import ProviderPool
from wanbatch.backends.remote.secrets import RedactingFilter, redact, register_secret
from wanbatch.config.load import backend_config
from wanbatch.errors import Cancelled, ProviderError, RenderError

import remote_fixtures as rf
from remote_fixtures import *  # noqa: F403 - fixtures

NOVITA = {"id": "s", "prompt": "A fox.", "seed": 1}
GMI = {"id": "s", "backend": "gmi_wan21_i2v", "prompt": "An eagle.", "image": "first.png", "seed": 2}


def polls_of(remote: rf.Remote) -> list[float]:
    return [t for t, r in remote.recorder.timed if r.method == "GET" and "/_fake/" not in str(r.url)]


def test_the_request_id_is_journalled_before_the_first_poll(remote: rf.Remote) -> None:
    job, backend = remote.job(GMI)
    seen: list[Any] = []

    def check(request: httpx.Request) -> None:
        if request.method == "GET" and "/requests/" in str(request.url) and not seen:
            seen.append(remote.cache.journal.get(job.key))

    backend.client.event_hooks["request"].append(check)
    result = remote.render(job, backend)
    (entry,) = seen
    assert entry["request_id"] == result.request_id and entry["state"] == "submitted"
    assert entry["backend"] == "gmi_wan21_i2v" and entry["scene"] == "s"
    final = remote.cache.journal.get(job.key)
    assert final is not None and final["state"] == "downloaded"  # the executor removes it once cached


def test_cancel_stops_polling_and_a_rerun_reattaches_without_submitting(remote: rf.Remote) -> None:
    remote.fake.configure(latency_s=1.5)
    job, backend = remote.job(NOVITA)
    cancel = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            remote.render(job, backend, cancel=cancel)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 5
    while remote.cache.journal.get(job.key) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    cancel.set()
    t0 = time.monotonic()
    worker.join(5)
    assert time.monotonic() - t0 < 0.5  # polling stops at once
    assert isinstance(errors[0], Cancelled) and "re-attaches" in str(errors[0])
    entry = remote.cache.journal.get(job.key)
    assert entry is not None and entry["request_id"]

    result = remote.render(job, backend)
    assert result.info["reattached"] and result.request_id == entry["request_id"]
    assert remote.fake.stats()["submissions"] == {"wan2.1-t2v": 1}


def test_reattaching_to_a_finished_job_polls_at_once_and_downloads(remote: rf.Remote) -> None:
    job, backend = remote.job(GMI)
    body = backend.body(job)
    submitted = httpx.post(backend.api_url(), json=body, headers={"Authorization": "Bearer k"}).json()
    remote.cache.journal.record(job.key, backend=backend.name, request_id=submitted["request_id"], state="submitted")
    time.sleep(0.3)  # the provider finished while "we" were down
    t0 = time.monotonic()
    result = remote.render(job, backend)
    assert time.monotonic() - t0 < 1.0
    assert (result.request_id, result.info["reattached"], result.info["polls"]) == (submitted["request_id"], True, 1)
    assert remote.fake.stats()["submissions"] == {rf.MODEL["gmi_wan21_i2v"]: 1}
    assert set(result.info["timings"]) == {"download"}  # no submit, and the provider's time is not ours to know


def test_the_info_of_a_render_says_where_its_time_went(remote: rf.Remote) -> None:
    remote.fake.configure(latency_s=0.3)
    job, backend = remote.job(NOVITA)
    result = remote.render(job, backend)
    t = result.info["timings"]
    assert set(t) == {"submit", "provider", "download"}
    assert t["provider"] >= 0.3  # the fake is done 0.3 s after it took the job, and it cannot be seen earlier
    assert 0 < t["submit"] < t["provider"] and 0 < t["download"] < t["provider"]
    assert t["submit"] + t["provider"] + t["download"] <= result.info["seconds"]


def test_reattaching_after_the_url_expired_reports_it_then_renders_again(remote: rf.Remote) -> None:
    remote.fake.configure(url_ttl_s=0.05)
    job, backend = remote.job(NOVITA)
    submitted = httpx.post(backend.api_url(), json=backend.body(job), headers={"Authorization": "Bearer k"}).json()
    remote.cache.journal.record(job.key, backend=backend.name, request_id=submitted["task_id"], state="succeeded")
    time.sleep(0.4)  # done at 0.2 s, its URL expired at 0.25 s
    remote.fake.configure(url_ttl_s=3600)
    result = remote.render(job, backend)
    assert "HTTP 403" in result.info["notes"][0] and "again" in result.info["notes"][0]
    assert result.request_id != submitted["task_id"]
    assert remote.fake.stats()["submissions"] == {"wan2.1-t2v": 2}


def test_reattaching_to_an_id_the_provider_forgot_reports_it_then_renders_again(remote: rf.Remote) -> None:
    job, backend = remote.job(GMI)
    remote.cache.journal.record(job.key, backend=backend.name, request_id="no-such-request", state="submitted")
    result = remote.render(job, backend)
    assert "no longer knows journalled request no-such-request" in result.info["notes"][0]
    assert remote.fake.stats()["submissions"] == {rf.MODEL["gmi_wan21_i2v"]: 1}


def test_a_journal_entry_of_another_backend_is_not_reattached(remote: rf.Remote) -> None:
    job, backend = remote.job(NOVITA)
    remote.cache.journal.record(job.key, backend="aiml_wan27_i2v", request_id="theirs", state="submitted")
    result = remote.render(job, backend)
    assert not result.info["reattached"] and result.request_id != "theirs"


def test_max_in_flight_is_shared_by_every_backend_of_a_provider(remote: rf.Remote) -> None:
    remote.fake.configure(latency_s=0.3)
    i2v = remote.backend("gmi_wan21_i2v", max_in_flight=2)
    flf = remote.backend("gmi_wan21_flf2v", max_in_flight=3)  # the strictest live limit rules: 2
    scenes = [
        {"id": f"a{i}", "backend": "gmi_wan21_i2v", "prompt": "p", "image": "first.png", "seed": i} for i in range(3)
    ]
    scenes += [
        {
            "id": f"b{i}",
            "backend": "gmi_wan21_flf2v",
            "prompt": "p",
            "image": "first.png",
            "last_image": "last.png",
            "seed": i,
        }
        for i in range(3)
    ]
    from wanbatch.config.schema import ProjectConfig, WanbatchConfig
    from wanbatch.core.plan import make_plan
    from wanbatch.core.project import load_project

    cfg = WanbatchConfig(project=ProjectConfig(name="t"), backend=i2v.config, scenes=scenes)
    backends = {"gmi_wan21_i2v": i2v, "gmi_wan21_flf2v": flf}
    plan = make_plan(load_project(cfg, remote.root, {n: b.config for n, b in backends.items()}), backends)
    threads = [threading.Thread(target=remote.render, args=(job, backends[job.backend])) for job in plan.jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    stats = remote.fake.stats()
    assert sum(stats["submissions"].values()) == 6
    assert stats["max_active"]["gmi"] == 2
    assert i2v.pool is flf.pool and i2v.pool.in_flight == 0


def test_requests_per_second_spaces_every_api_call() -> None:
    class Member:
        pass

    owner = Member()
    pool = ProviderPool.join("test-rps", "http://x", owner, 4, 20.0)
    cancel = threading.Event()
    t0 = time.monotonic()
    for _ in range(11):
        pool.throttle(cancel)
    assert 0.5 <= time.monotonic() - t0 < 0.9  # 10 gaps of 1/20 s


def test_polls_back_off(remote: rf.Remote) -> None:
    remote.fake.configure(latency_s=1.2)
    job, backend = remote.job(
        GMI, poll={"initial_s": 0.1, "interval_s": 0.1, "backoff": 2.0, "jitter": 0.0, "max_interval_s": 10}
    )
    result = remote.render(job, backend)
    times = polls_of(remote)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert result.info["polls"] == len(times) == 5  # at 0.1, 0.2, 0.4, 0.8, 1.6 s
    assert gaps[0] < 0.3 and gaps[-1] >= 0.75, gaps  # 0.1 s growing to 0.8 s (loose: a busy machine lags)


def test_novita_polls_follow_the_eta_hint(remote: rf.Remote) -> None:
    remote.fake.configure(latency_s=1.2)
    fixed = {
        "initial_s": 0.1,
        "interval_s": 0.1,
        "backoff": 1.0,
        "jitter": 0.0,
        "min_interval_s": 0.05,
        "max_interval_s": 10,
    }
    job, backend = remote.job(NOVITA, poll=fixed)
    result = remote.render(job, backend)
    assert result.info["polls"] <= 3  # 0.1 s, then at the eta (1.2 s): done
    # The same job on a fixed 0.1 s interval would have polled about 12 times.


def test_the_first_poll_is_due_when_the_job_is_and_never_earlier(remote: rf.Remote) -> None:
    remote.fake.configure(latency_s=0.4)
    # jitter 0.5 would have put half the first polls before the job is done, had it been +-50%
    poll = {"initial_s": 0.4, "interval_s": 5, "jitter": 0.5, "min_interval_s": 0.05}
    for seed in range(3):
        job, backend = remote.job({**GMI, "seed": seed}, poll=poll)
        result = remote.render(job, backend)
        assert result.info["polls"] == 1  # never early, so never twice
    posts = [t for t, r in remote.recorder.timed if r.method == "POST"]
    gaps = [next(t for t in polls_of(remote) if t > p) - p for p in posts]
    assert len(gaps) == 3 and all(0.4 <= g < 1.0 for g in gaps), gaps


def test_the_provider_slot_is_free_while_the_video_downloads(remote: rf.Remote) -> None:
    job, backend = remote.job(GMI)
    seen: list[int] = []

    def check(request: httpx.Request) -> None:
        if "/_fake/videos/" in str(request.url):
            seen.append(backend.pool.in_flight)

    backend.client.event_hooks["request"].append(check)
    remote.render(job, backend)
    assert seen == [0]  # the job left the provider when it was done; the next may be submitted


def test_the_executor_submits_the_next_job_while_a_finished_one_downloads(remote: rf.Remote) -> None:
    """executor.concurrency counts jobs at the provider: with room for one, the second scene is submitted
    while the first one's video is still coming down (its download stalls 1.5 s here)."""
    from wanbatch.execute.local import LocalExecutor

    plan = remote.plan(
        [{"id": "first", "prompt": "A fox.", "seed": 1}, {"id": "second", "prompt": "A hare.", "seed": 2}]
    )
    backend = plan.backends["novita_wan21_t2v"]
    answered: list[float] = []

    def on_response(response: httpx.Response) -> None:
        if "/_fake/videos/" in str(response.request.url):
            answered.append(time.monotonic())

    backend.client.event_hooks["response"].append(on_response)
    remote.fake.fault("slow", phase="download", delay=1.5, times=1)
    outcomes = LocalExecutor(remote.cache, concurrency=1).run(plan)
    assert [o.status for o in outcomes.values()] == ["rendered", "rendered"]
    submits = [t for t, r in remote.recorder.timed if r.method == "POST" and "/_fake/" not in str(r.url)]
    assert len(submits) == 2 and len(answered) == 2
    assert submits[1] < answered[0]  # sent before the stalled download had even answered
    assert remote.fake.stats()["max_active"]["novita"] == 1  # still one job at the provider at a time


def _interrupt_during_first_download(
    remote: rf.Remote, backend: Any, times: int, handled: threading.Event | None = None
) -> threading.Thread:
    """Ctrl-C (`times` of them) once the first video download has been asked for. Each after the first
    waits until `handled` (the executor's cancel event) says the first was seen (two that come before the
    main thread looks are one Ctrl-C), then as long again as a person takes to press it twice, so that it
    lands in the executor's wait for its running jobs rather than in the few lines before it."""
    import _thread

    asked = threading.Event()

    def on_request(request: httpx.Request) -> None:
        if "/_fake/videos/" in str(request.url):
            asked.set()

    backend.client.event_hooks["request"].append(on_request)

    def interrupt() -> None:
        asked.wait(20)
        time.sleep(0.3)  # into the download
        _thread.interrupt_main()
        for _ in range(times - 1):
            assert handled is not None and handled.wait(20)
            time.sleep(0.3)
            _thread.interrupt_main()

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_lets_a_paid_render_finish_downloading_and_caches_it(
    remote: rf.Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    from wanbatch.execute.local import LocalExecutor

    # "first" is done at GMI in 0.3 s and its video takes 1.5 s to come; "second" (Novita) takes 5 s.
    plan = remote.plan([{**GMI, "id": "first"}, {"id": "second", "prompt": "A hare.", "seed": 2}])
    gmi = rf.MODEL["gmi_wan21_i2v"]
    remote.fake.configure(latency_s=5.0, latency_by_model={gmi: 0.3})
    remote.fake.fault("slow", phase="download", delay=1.5, times=1, model=gmi)
    interrupter = _interrupt_during_first_download(remote, plan.backends["gmi_wan21_i2v"], times=1)
    executor = LocalExecutor(remote.cache, concurrency=1)
    done: dict[str, Any] = {}
    with pytest.raises(KeyboardInterrupt):
        executor.run(plan, on_done=lambda o: done.__setitem__(o.scene, o))
    interrupter.join(5)
    assert done["first"].status == "rendered"  # paid for: downloaded and cached despite the Ctrl-C
    assert remote.cache.fetch(plan.job("first").key) is not None
    assert remote.cache.journal.get(plan.job("first").key) is None
    assert done["second"].status == "cancelled"  # at the provider: it stopped polling, its id kept
    kept = remote.cache.journal.get(plan.job("second").key)
    assert kept is not None and kept["state"] == "submitted"
    assert "1 render(s) already paid for are finishing their download (first)" in capsys.readouterr().err


def test_a_second_ctrl_c_leaves_the_download_with_its_request_id_kept(remote: rf.Remote) -> None:
    from wanbatch.execute.local import LocalExecutor

    plan = remote.plan([{"id": "first", "prompt": "A fox.", "seed": 1}])
    backend = plan.backends["novita_wan21_t2v"]
    remote.fake.fault("slow", phase="download", delay=3.0, times=1)
    cancel = threading.Event()
    interrupter = _interrupt_during_first_download(remote, backend, times=2, handled=cancel)
    done: dict[str, Any] = {}
    with pytest.raises(KeyboardInterrupt):
        executor = LocalExecutor(remote.cache, concurrency=1, cancel=cancel)
        executor.run(plan, on_done=lambda o: done.__setitem__(o.scene, o))
    interrupter.join(5)
    # (A download stalled before its first byte is left at its first chunk or its read timeout.)
    assert done["first"].status == "cancelled" and "abandoned" in (done["first"].error or "")
    kept = remote.cache.journal.get(plan.job("first").key)
    assert kept is not None and kept["state"] == "succeeded" and kept["video_url"]  # a rerun fetches it
    assert remote.cache.fetch(plan.job("first").key) is None
    rerun = LocalExecutor(remote.cache, concurrency=1).run(plan)
    assert rerun["first"].status == "rendered" and remote.fake.stats()["submissions"] == {"wan2.1-t2v": 1}


def test_a_job_that_never_finishes_times_out_with_its_id_kept(remote: rf.Remote) -> None:
    remote.fake.configure(latency_s=30)
    job, backend = remote.job(NOVITA, poll={"initial_s": 0.05, "interval_s": 0.05, "timeout_s": 0.3})
    with pytest.raises(RenderError, match=r"still `TASK_STATUS_(QUEUED|PROCESSING)` after 0.3s.*re-attaches"):
        remote.render(job, backend)
    entry = remote.cache.journal.get(job.key)
    assert entry is not None and entry["request_id"]


def test_a_render_from_another_endpoint_has_another_cache_key(remote: rf.Remote) -> None:
    job, backend = remote.job(NOVITA)
    identity = backend.model_identity(job.scene)
    assert identity == {"provider": "novita", "model": "wan2.1-t2v", "endpoint": remote.fake.url}
    real = type(backend)(backend_config("novita_wan21_t2v"))  # the provider's own endpoint
    assert real.model_identity(job.scene) == {"provider": "novita", "model": "wan2.1-t2v"}
    real.close()


# -- the key never leaks -----------------------------------------------------------------------------
def test_redaction_covers_messages_and_log_records(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("sk-redact-me-123456")
    assert redact("Bearer sk-redact-me-123456 failed") == "Bearer *** failed"
    assert any(isinstance(f, RedactingFilter) for f in logging.getLogger("httpx").filters)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("httpx").info("header was %s", "sk-redact-me-123456")
        logging.getLogger("wanbatch.remote").warning("key sk-redact-me-123456")
    assert "sk-redact-me-123456" not in caplog.text and caplog.text.count("***") == 2


def test_the_key_is_in_no_file_log_or_message_of_a_run_with_faults(
    remote: rf.Remote, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake = remote.fake
    fake.fault("429", retry_after=0.05)
    fake.fault("500", phase="poll")
    fake.fault("failed", model=rf.MODEL["aiml_wan27_i2v"], reason="moderation")
    fake.fault("expired", model=rf.MODEL["gmi_wan21_i2v"])
    fake.fault("truncate", model=rf.MODEL["gmi_wan21_flf2v"], times=-1)
    scenes = [
        {"id": "n", "prompt": "p", "seed": 1},
        {"id": "g", "backend": "gmi_wan21_i2v", "prompt": "p", "image": "first.png", "seed": 2},
        {
            "id": "f",
            "backend": "gmi_wan21_flf2v",
            "prompt": "p",
            "image": "first.png",
            "last_image": "last.png",
            "seed": 3,
        },
        {"id": "a", "backend": "aiml_wan27_i2v", "prompt": "p", "image": "first.png", "seed": 4},
    ]
    plan = remote.plan(scenes)
    messages = []
    with caplog.at_level(logging.DEBUG):
        for job in plan.jobs:
            from wanbatch.execute.common import render_and_store

            outcome = render_and_store(remote.cache, plan.backends[job.backend], job, lambda wd: remote.context(), None)
            messages.append(f"{outcome.status} {outcome.error} {outcome.info}")
    assert [m.split()[0] for m in messages] == ["rendered", "rendered", "failed", "failed"]
    assert "moderation" in messages[3]
    # Wrong keys at a provider that checks them: its refusal must not echo ours either.
    fake.configure(api_keys={"novita": "other"})
    job = plan.job("n")
    remote.cache.journal.remove(job.key)
    with pytest.raises(ProviderError) as err:
        plan.backends["novita_wan21_t2v"].render(job, remote.context())
    messages.append(str(err.value))
    blob = caplog.text + "\n".join(messages)
    assert "HTTP Request" in caplog.text  # httpx's own lines were captured
    for key in rf.KEYS.values():
        assert key not in blob
    assert rf.scan_for_keys(remote.cache.dir) == []
    assert rf.scan_for_keys(tmp_path) == []
