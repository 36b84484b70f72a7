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
from wanbatch.config.load import backend_config
from wanbatch.errors import Cancelled, ProviderError, RenderError
from wanbatch.secrets import RedactingFilter, redact, register_secret

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
    held = remote.fake.hold("result")  # the job stays at the provider until the test lets it finish
    job, backend = remote.job(NOVITA, poll={"initial_s": 0.05, "interval_s": 60, "backoff": 1.0, "jitter": 0})
    cancel = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            remote.render(job, backend, cancel=cancel)
        except BaseException as exc:
            errors.append(exc)

    first_poll = remote.fake.hold("poll")  # answered once the test has seen it
    worker = threading.Thread(target=run)
    worker.start()
    assert first_poll.wait_arrivals(1, timeout=60)  # journalled and polling (the next poll is 60 s away)
    assert remote.cache.journal.get(job.key) is not None
    first_poll.release()
    cancel.set()
    worker.join(30)  # had it waited for its next poll, or for the job, this would be 60 s or never
    assert not worker.is_alive()
    assert isinstance(errors[0], Cancelled) and "re-attaches" in str(errors[0])
    assert remote.fake.jobs()[0]["status"] in ("queued", "processing")  # stopped while the job ran on
    entry = remote.cache.journal.get(job.key)
    assert entry is not None and entry["request_id"]

    held.release()
    result = remote.render(job, backend)
    assert result.info["reattached"] and result.request_id == entry["request_id"]
    assert remote.fake.stats()["submissions"] == {"wan2.1-t2v": 1}


def test_reattaching_to_a_finished_job_polls_at_once_and_downloads(remote: rf.Remote) -> None:
    # A first poll 60 s after a submit: had the re-attached job waited for it, the render would take a minute.
    job, backend = remote.job(GMI, poll={"initial_s": 60, "interval_s": 60, "timeout_s": 300})
    body = backend.body(job)
    submitted = httpx.post(backend.api_url(), json=body, headers={"Authorization": "Bearer k"}).json()
    remote.cache.journal.record(job.key, backend=backend.name, request_id=submitted["request_id"], state="submitted")
    _wait_until(lambda: remote.fake.jobs()[0]["status"] == "success")  # finished while "we" were down
    result = _within(30, lambda: remote.render(job, backend))
    assert (result.request_id, result.info["reattached"], result.info["polls"]) == (submitted["request_id"], True, 1)
    assert remote.fake.stats()["submissions"] == {rf.MODEL["gmi_wan21_i2v"]: 1}
    assert set(result.info["timings"]) == {"download"}  # no submit, and the provider's time is not ours to know


def test_the_info_of_a_render_says_where_its_time_went(remote: rf.Remote) -> None:
    held = remote.fake.hold("result")
    job, backend = remote.job(NOVITA, poll={"initial_s": 0.05, "interval_s": 0.05, "backoff": 1.0})
    polled = remote.fake.hold("poll")
    got: list[Any] = []
    worker = threading.Thread(target=lambda: got.append(remote.render(job, backend)))
    worker.start()
    assert polled.wait_arrivals(1, timeout=60)
    seen_at = time.monotonic()  # the job has been submitted and polled: the provider has it
    polled.release()
    time.sleep(0.3)  # the provider's time: at least this long (a sleep is never shorter)
    held.release()
    worker.join(60)
    held_for = time.monotonic() - seen_at
    t = got[0].info["timings"]
    assert set(t) == {"submit", "provider", "download"} and all(v > 0 for v in t.values())
    assert t["provider"] >= 0.3 and held_for >= 0.3
    assert t["submit"] + t["provider"] + t["download"] <= got[0].info["seconds"] + 0.002  # four roundings to 1 ms


def test_reattaching_after_the_url_expired_reports_it_then_renders_again(remote: rf.Remote) -> None:
    job, backend = remote.job(NOVITA)
    submitted = httpx.post(backend.api_url(), json=backend.body(job), headers={"Authorization": "Bearer k"}).json()
    remote.cache.journal.record(job.key, backend=backend.name, request_id=submitted["task_id"], state="succeeded")
    _wait_until(lambda: remote.fake.jobs()[0]["status"] == "success")
    remote.fake.fault("expired", model=rf.MODEL["novita_wan21_t2v"])  # its signed URL has expired since
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
    times = []
    for _ in range(11):
        pool.throttle(cancel)
        times.append(time.monotonic() - t0)
    # The k-th call goes no sooner than k/20 s in: never faster than 20 a second. (How close to that a busy
    # machine gets is not this test's business.)
    assert all(t >= k / 20 - 1e-3 for k, t in enumerate(times)), times


def test_polls_back_off(remote: rf.Remote) -> None:
    remote.fake.hold("result", after_polls=5)  # done at its fifth poll, however late that comes
    job, backend = remote.job(
        GMI, poll={"initial_s": 0.1, "interval_s": 0.1, "backoff": 2.0, "jitter": 0.0, "max_interval_s": 10}
    )
    result = remote.render(job, backend)
    times = polls_of(remote)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert result.info["polls"] == len(times) == 5
    # Waits of 0.2, 0.4 and 0.8 s between them (a wait is never shorter; a busy machine only adds to it).
    assert all(gap >= 0.1 * 2 ** (n + 1) * 0.95 for n, gap in enumerate(gaps[1:])), gaps


def test_novita_polls_follow_the_eta_hint(remote: rf.Remote) -> None:
    remote.fake.configure(latency_s=1.2)  # the eta hint says when: a late poll only needs fewer
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


def test_an_eta_of_zero_means_poll_again_soon_not_after_a_whole_interval(
    remote: rf.Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task Novita expects done any moment (`eta: 0`, or less when running late) is polled again after
    min_interval_s. Read as no hint, the next poll waited interval_s (here 30 s) on a render about to finish."""
    from wanbatch.testing.fakeprovider.state import FakeJob

    monkeypatch.setattr(FakeJob, "eta", lambda self, now: 0.0)  # every running answer says `eta: 0`
    remote.fake.configure(latency_s=0.6)
    poll = {"initial_s": 0.1, "interval_s": 30, "backoff": 1.0, "jitter": 0.0, "min_interval_s": 0.1}
    job, backend = remote.job(NOVITA, poll=poll)
    result = remote.render(job, backend)
    gaps = [b - a for a, b in itertools.pairwise(polls_of(remote))]
    assert result.info["polls"] >= 2 and gaps  # it was running at the first poll, so polled again
    assert max(gaps) < 15, gaps  # min_interval_s apart (slower on a loaded machine), never interval_s


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
    assert len(gaps) == 3 and all(g >= 0.4 for g in gaps), gaps


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
    while the first one's video is still coming down (held here until the second job is in, or a minute)."""
    from wanbatch.execute.local import LocalExecutor

    plan = remote.plan(
        [{"id": "first", "prompt": "A fox.", "seed": 1}, {"id": "second", "prompt": "A hare.", "seed": 2}]
    )
    download = remote.fake.hold("download")
    seen: dict[str, bool] = {}

    def second_submitted_during_the_download() -> None:
        download.wait_arrivals(1, timeout=60)
        seen["second"] = _wait_until(lambda: remote.fake.stats()["total"].get("submissions") == 2, fail=False)
        download.release()

    watcher = threading.Thread(target=second_submitted_during_the_download, daemon=True)
    watcher.start()
    outcomes = LocalExecutor(remote.cache, concurrency=1).run(plan)
    watcher.join(60)
    assert [o.status for o in outcomes.values()] == ["rendered", "rendered"]
    assert seen == {"second": True}  # submitted while the first one's download was held
    assert remote.fake.stats()["max_active"]["novita"] == 1  # still one job at the provider at a time


def _wait_until(condition: Any, *, limit: float = 60, fail: bool = True) -> bool:
    """Wait for a state (not for a time): up to `limit` s however busy the machine is."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            assert not fail, "never happened"
            return False
        time.sleep(0.02)
    return True


def _within(limit: float, fn: Any) -> Any:
    """fn(), which must return within `limit` s (a generous bound: only a wrong wait takes that long)."""
    got: list[Any] = []
    worker = threading.Thread(target=lambda: got.append(fn()), daemon=True)
    worker.start()
    worker.join(limit)
    assert got, f"did not finish within {limit} s"
    return got[0]


def _interrupt(executor: Any, *, when: Any, then: Any = lambda: None, twice: bool = False) -> threading.Thread:
    """Ctrl-C the main thread once `when()` holds; once the executor has seen it (its cancel is set), `then()`.
    With `twice`, a second Ctrl-C once it has seen the first (then waits for `abandon`)."""
    import _thread

    def interrupt() -> None:
        _wait_until(when)
        _thread.interrupt_main()
        _wait_until(executor.cancel.is_set)
        if twice:
            _thread.interrupt_main()
            _wait_until(executor.abandon.is_set)
        then()

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_lets_a_paid_render_finish_downloading_and_caches_it(
    remote: rf.Remote, capsys: pytest.CaptureFixture[str], ctrl_c: None
) -> None:
    from wanbatch.execute.local import LocalExecutor

    # "first" (GMI) is done at once and its video download is held; "second" (Novita) is held at the provider.
    plan = remote.plan([{**GMI, "id": "first"}, {"id": "second", "prompt": "A hare.", "seed": 2}])
    download = remote.fake.hold("download")
    at_provider = remote.fake.hold("result", model=rf.MODEL["novita_wan21_t2v"])
    executor = LocalExecutor(remote.cache, concurrency=1)
    interrupter = _interrupt(
        executor,
        when=lambda: download.arrivals >= 1 and remote.cache.journal.get(plan.job("second").key) is not None,
        then=download.release,
    )
    done: dict[str, Any] = {}
    with pytest.raises(KeyboardInterrupt):
        executor.run(plan, on_done=lambda o: done.__setitem__(o.scene, o))
    interrupter.join(60)
    assert done["first"].status == "rendered"  # paid for: downloaded and cached despite the Ctrl-C
    assert remote.cache.fetch(plan.job("first").key) is not None
    assert remote.cache.journal.get(plan.job("first").key) is None
    assert done["second"].status == "cancelled"  # at the provider: it stopped polling, its id kept
    kept = remote.cache.journal.get(plan.job("second").key)
    assert kept is not None and kept["state"] == "submitted" and not at_provider.released
    assert "1 render(s) already paid for are finishing their download (first)" in capsys.readouterr().err


def test_a_second_ctrl_c_leaves_the_download_with_its_request_id_kept(remote: rf.Remote, ctrl_c: None) -> None:
    from wanbatch.execute.local import LocalExecutor

    plan = remote.plan([{"id": "first", "prompt": "A fox.", "seed": 1}])
    download = remote.fake.hold("download")
    executor = LocalExecutor(remote.cache, concurrency=1)
    interrupter = _interrupt(executor, when=lambda: download.arrivals >= 1, then=download.release, twice=True)
    done: dict[str, Any] = {}
    with pytest.raises(KeyboardInterrupt):
        executor.run(plan, on_done=lambda o: done.__setitem__(o.scene, o))
    interrupter.join(60)
    # The download is left at its first chunk (or its read timeout), after the second Ctrl-C; a body that
    # stalls is cut at once: tests/backends/remote/test_remote_hostile.py.
    assert done["first"].status == "cancelled" and "abandoned" in (done["first"].error or "")
    kept = remote.cache.journal.get(plan.job("first").key)
    assert kept is not None and kept["state"] == "succeeded" and kept["video_url"]  # a rerun fetches it
    assert remote.cache.fetch(plan.job("first").key) is None
    rerun = LocalExecutor(remote.cache, concurrency=1).run(plan)
    assert rerun["first"].status == "rendered" and remote.fake.stats()["submissions"] == {"wan2.1-t2v": 1}


def test_a_job_that_never_finishes_times_out_with_its_id_kept(remote: rf.Remote) -> None:
    remote.fake.hold("result")  # never done (until the test ends)
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


def test_a_finished_render_downloads_once_the_submit_in_progress_is_answered(
    remote: rf.Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wanbatch.backends.remote.limits import SUBMITS
    from wanbatch.execute.local import LocalExecutor

    # Here only the submit's answer lets the download go (its cap is for submits that hang).
    monkeypatch.setattr(SUBMITS, "WAIT_S", 120.0)
    plan = remote.plan([{**GMI, "id": "first"}, {"id": "second", "prompt": "A hare.", "seed": 2}])
    at_provider = remote.fake.hold("result", model=rf.MODEL["gmi_wan21_i2v"])  # "first" runs until told
    submit = remote.fake.hold("submit", model=rf.MODEL["novita_wan21_t2v"])  # "second" is being sent
    download = remote.fake.hold("download")  # counts the downloads that begin
    outcomes: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: outcomes.update(LocalExecutor(remote.cache, concurrency=2).run(plan)), daemon=True
    )
    worker.start()
    assert submit.wait_arrivals(1)
    at_provider.release()  # "first" is done at the provider while "second" is still being submitted
    _wait_until(lambda: SUBMITS.waiting == 1)
    entry = remote.cache.journal.get(plan.job("first").key)
    assert entry is not None and entry["state"] == "succeeded" and entry["video_url"]
    assert download.arrivals == 0  # paid for, and waiting for the submit to be answered
    submit.release()
    assert download.wait_arrivals(1)
    download.release()
    worker.join(120)
    assert {s: o.status for s, o in outcomes.items()} == {"first": "rendered", "second": "rendered"}
    assert SUBMITS.pending == 0 and SUBMITS.waiting == 0


def test_warm_makes_the_http_client_before_the_first_call(api_keys: dict[str, str]) -> None:
    """A run about to render a remote backend's jobs warms it: its HTTP client (httpcore imported, a TLS context
    loaded: 40-60 ms of CPU) is made on a thread of its own, not by the first submit."""
    from wanbatch.backends import get_backend_class

    backend = get_backend_class("novita_wan21_t2v")(backend_config("novita_wan21_t2v"))
    assert isinstance(backend, rf.RemoteBackend)
    try:
        assert backend.api._client is None  # made on first use only
        backend.warm()
        for thread in threading.enumerate():
            if thread.name == "wanbatch-warm-novita_wan21_t2v":
                thread.join(60)
        assert isinstance(backend.api._client, httpx.Client)
        assert backend.client is backend.api._client  # the one the calls use
    finally:
        backend.close()
