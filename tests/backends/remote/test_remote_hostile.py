"""Downloads and submits against a hostile server on 127.0.0.1: a body that trickles in or stalls never
holds a download past its total deadline (nor past a second Ctrl-C), a video larger than `max_download_mb`
is refused by its Content-Length or while it is read, a video URL is followed only to https or its own
origin, and a submit never follows a redirect (it would send the body, and pay, elsewhere)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from wanbatch.backends import get_backend_class
from wanbatch.backends.remote.base import RemoteBackend
from wanbatch.backends.remote.download import download, redirect_allowed
from wanbatch.backends.remote.run import Run
from wanbatch.errors import Cancelled, DownloadError, ProviderError

import remote_fixtures as rf
from hostile import Hostile, endless, redirect, serve, silent, stall, trickle
from remote_fixtures import *  # noqa: F403 - fixtures

NOVITA = {"id": "s", "prompt": "A fox.", "seed": 1}
# Reads may wait a minute: only the total deadline (or the test) can end these downloads early.
PATIENT = {"download_s": 60, "download_total_s": 60}


@pytest.fixture
def bad() -> Any:
    with Hostile() as server:
        yield server


def own_client_backend(remote: rf.Remote, name: str, base_url: str, **overrides: Any) -> RemoteBackend:
    """A backend with the HTTP client it makes for itself, as in a real run (tests otherwise inject one)."""
    backend = get_backend_class(name)(rf.backend_config(name, base_url, overrides))
    assert isinstance(backend, RemoteBackend)
    remote.backends.append(backend)
    return backend


def fetch(remote: rf.Remote, url: str, *, own_client: bool = False, **overrides: Any) -> tuple[Path, Run]:
    job, backend = remote.job(NOVITA, **overrides)
    if own_client:
        backend = own_client_backend(remote, "novita_wan21_t2v", remote.fake.url, **overrides)
    run = Run(job, remote.context())
    return download(backend.api, run, url), run


# -- the total deadline ----------------------------------------------------------------------------
def test_a_trickling_body_is_cut_at_the_total_deadline(remote: rf.Remote, bad: Hostile) -> None:
    bad.route("/v.mp4", trickle(b"x" * 100_000))
    with pytest.raises(DownloadError, match=r"took longer than 0\.5s"):
        fetch(remote, bad.url + "/v.mp4", timeouts={**PATIENT, "download_total_s": 0.5})
    assert not bad.released.is_set()  # the server was still sending: the deadline, not the body, ended it
    assert bad.hits["/v.mp4"] == 1  # a deadline is not retried


def test_a_stalled_body_is_cut_at_the_total_deadline_not_its_read_timeout(remote: rf.Remote, bad: Hostile) -> None:
    bad.route("/v.mp4", stall(first=b"\0\0\0\x18ftyp"))
    with pytest.raises(DownloadError, match=r"took longer than 0\.5s"):
        fetch(remote, bad.url + "/v.mp4", timeouts={**PATIENT, "download_total_s": 0.5})
    assert not bad.released.is_set()


def test_a_server_that_never_answers_is_given_up_at_the_total_deadline(remote: rf.Remote, bad: Hostile) -> None:
    bad.route("/v.mp4", silent())
    with pytest.raises(DownloadError, match=r"took longer than 0\.5s"):
        fetch(remote, bad.url + "/v.mp4", timeouts={**PATIENT, "download_total_s": 0.5})
    assert not bad.released.is_set()
    assert bad.hits["/v.mp4"] == 1


def test_a_second_ctrl_c_cuts_a_stalled_download_at_once(remote: rf.Remote, bad: Hostile) -> None:
    bad.route("/v.mp4", stall(first=b"\0\0\0\x18ftyp"))
    job, backend = remote.job(NOVITA, timeouts=PATIENT)
    run = Run(job, remote.context())
    raised: list[BaseException] = []

    def go() -> None:
        try:
            download(backend.api, run, bad.url + "/v.mp4")
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=go)
    thread.start()
    assert bad.arrived.wait(30)
    run.ctx.abandon.set()
    thread.join(30)
    assert not thread.is_alive() and not bad.released.is_set()
    assert len(raised) == 1 and isinstance(raised[0], Cancelled) and "abandoned" in str(raised[0])
    assert list(run.ctx.workdir.iterdir()) == []


# -- the size cap ----------------------------------------------------------------------------------
def test_a_content_length_over_the_cap_is_refused_before_reading(remote: rf.Remote, bad: Hostile) -> None:
    bad.route("/v.mp4", endless(length=2 * 2**30))
    with pytest.raises(DownloadError, match=r"2048 MB.*`backends\.novita_wan21_t2v\.max_download_mb` = 1\b"):
        fetch(remote, bad.url + "/v.mp4", max_download_mb=1, timeouts=PATIENT)
    assert bad.hits["/v.mp4"] == 1  # refused, not retried


def test_a_body_without_length_is_cut_at_the_cap(remote: rf.Remote, bad: Hostile) -> None:
    bad.route("/v.mp4", endless())
    with pytest.raises(DownloadError, match=r"more than 1 MB.*max_download_mb") as err:
        fetch(remote, bad.url + "/v.mp4", max_download_mb=1, timeouts={**PATIENT, "download_total_s": 20})
    assert "took longer" not in str(err.value)
    assert bad.hits["/v.mp4"] == 1


def test_max_download_mb_is_checked_with_the_other_options(remote: rf.Remote) -> None:
    from wanbatch.errors import ConfigError

    bad_cap = r"`backends\.novita_wan21_t2v\.max_download_mb` = 0(\.0)? is not allowed; a number > 0"
    with pytest.raises(ConfigError, match=bad_cap):
        remote.job(NOVITA, max_download_mb=0)
    _, backend = remote.job(NOVITA, max_download_mb=0.5)
    assert backend.config.max_download_mb == 0.5
    _, backend = remote.job(NOVITA)
    assert backend.config.max_download_mb == 2048  # the default: generous, and still a bound


# -- redirects -------------------------------------------------------------------------------------
def test_a_redirect_within_the_origin_is_followed(remote: rf.Remote, bad: Hostile, assets: Path) -> None:
    bad.route("/signed/v.mp4", redirect("/store/v.mp4"))
    bad.route("/store/v.mp4", serve((assets / "clip.mp4").read_bytes()))
    video, _ = fetch(remote, bad.url + "/signed/v.mp4")
    assert video.read_bytes() == (assets / "clip.mp4").read_bytes()


@pytest.mark.parametrize("own_client", [False, True], ids=["injected client", "own client"])
def test_a_redirect_to_another_origin_over_http_is_refused(
    remote: rf.Remote, bad: Hostile, assets: Path, own_client: bool
) -> None:
    with Hostile() as elsewhere:
        elsewhere.route("/v.mp4", serve((assets / "clip.mp4").read_bytes()))
        bad.route("/v.mp4", redirect(elsewhere.url + "/v.mp4"))
        with pytest.raises(DownloadError, match=r"redirected to http://127\.0\.0\.1:\d+/v\.mp4.*https or the same"):
            fetch(remote, bad.url + "/v.mp4", own_client=own_client)
        assert elsewhere.hits["/v.mp4"] == 0


def test_a_redirect_to_a_file_url_is_refused(remote: rf.Remote, bad: Hostile) -> None:
    bad.route("/v.mp4", redirect("file:///etc/passwd"))
    with pytest.raises(DownloadError, match=r"redirected to file:///etc/passwd.*https or the same"):
        fetch(remote, bad.url + "/v.mp4", own_client=True)
    assert bad.hits["/v.mp4"] == 1


def test_redirect_policy() -> None:
    assert redirect_allowed("http://a.test/x", "http://a.test/y")
    assert redirect_allowed("http://a.test/x", "https://cdn.test/y")
    assert redirect_allowed("https://a.test/x", "https://b.test/y")
    assert not redirect_allowed("https://a.test/x", "http://a.test/y")  # a downgrade is another origin
    assert not redirect_allowed("http://a.test/x", "http://a.test:81/y")
    assert not redirect_allowed("http://a.test/x", "http://b.test/y")
    assert not redirect_allowed("http://a.test/x", "file:///etc/passwd")
    assert not redirect_allowed("http://a.test/x", "ftp://a.test/y")


def test_too_many_redirects_are_refused(remote: rf.Remote, bad: Hostile) -> None:
    bad.route("/v.mp4", redirect("/v.mp4"))
    with pytest.raises(DownloadError, match="more than 5 redirects"):
        fetch(remote, bad.url + "/v.mp4")
    assert bad.hits["/v.mp4"] == 6


# -- submits never follow redirects ----------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirected_submit_is_not_followed_and_nothing_is_sent_elsewhere(
    remote: rf.Remote, bad: Hostile, status: int
) -> None:
    path = "/v3/async/wan-t2v"
    bad.route(path, redirect(remote.fake.url + path, status))
    job, _ = remote.job(NOVITA)
    backend = own_client_backend(remote, "novita_wan21_t2v", bad.url)
    with pytest.raises(ProviderError, match=rf"answered the submit with a redirect \(HTTP {status}\) to http://"):
        remote.render(job, backend)
    assert remote.fake.stats()["total"].get("submit_attempts", 0) == 0
    assert bad.methods == [f"POST {path}"]  # sent once, never again
    assert remote.cache.journal.get(job.key) is None


def test_a_redirected_poll_is_not_followed(remote: rf.Remote, bad: Hostile) -> None:
    job, backend = remote.job(NOVITA)
    request_id = "task-1"
    remote.cache.journal.record(job.key, backend=backend.name, request_id=request_id, state="submitted")
    result_path = "/v3/async/task-result"
    bad.route(result_path, redirect(remote.fake.url + result_path, 302))
    backend = own_client_backend(remote, "novita_wan21_t2v", bad.url)
    with pytest.raises(ProviderError, match=r"answered the status poll .* with a redirect \(HTTP 302\)"):
        remote.render(job, backend)
    assert remote.fake.stats()["total"].get("polls", 0) == 0
    entry = remote.cache.journal.get(job.key)
    assert entry is not None and entry["request_id"] == request_id  # kept: a rerun re-attaches
