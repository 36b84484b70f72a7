"""Every fault the fake provider can inject, and what the backend makes of it (over real sockets)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from wanbatch.backends.remote.base import AmbiguousSubmit
from wanbatch.errors import DownloadError, ProviderError, RenderError

import remote_fixtures as rf
from remote_fixtures import *  # noqa: F403 - fixtures

NOVITA = {"id": "s", "prompt": "A fox.", "seed": 1}
GMI = {"id": "s", "backend": "gmi_wan21_i2v", "prompt": "An eagle.", "image": "first.png", "seed": 2}
AIML = {"id": "s", "backend": "aiml_wan27_i2v", "prompt": "A harbour.", "image": "first.png", "seed": 3}
SCENES = {"gmi": GMI, "aiml": AIML, "novita": NOVITA}
# A `slow` fault stalls 5 s (or until the test ends); the client reads for 0.4 s, so it times out after sending.
SLOW = {"delay": 5.0}
SHORT_READ = {"timeouts": {"read_s": 0.4}}


def counts(remote: rf.Remote, what: str) -> int:
    return int(remote.fake.stats()["total"].get(what, 0))


def render(remote: rf.Remote, scene: dict[str, Any], **overrides: Any) -> Any:
    job, backend = remote.job(scene, **overrides)
    return job, remote.render(job, backend)


# -- submit ----------------------------------------------------------------------------------------
def test_429_on_submit_honours_retry_after(remote: rf.Remote) -> None:
    remote.fake.fault("429", retry_after=1)
    t0 = time.monotonic()
    _, result = render(remote, NOVITA)
    assert time.monotonic() - t0 >= 1.0
    assert (counts(remote, "submit_attempts"), counts(remote, "submissions")) == (2, 1)
    assert result.info["retries"] == 1


@pytest.mark.parametrize("provider", ["gmi", "aiml", "novita"])
def test_503_on_submit_is_retried_it_was_not_accepted(remote: rf.Remote, provider: str) -> None:
    remote.fake.fault("503", phase="submit", times=2, retry_after=0.1)
    _, result = render(remote, SCENES[provider])
    assert (counts(remote, "submit_attempts"), counts(remote, "submissions")) == (3, 1)
    assert result.info["submits"] == 1 and result.info["retries"] == 2


def test_connection_refused_on_submit_is_retried_then_reported(remote: rf.Remote) -> None:
    job, backend = remote.job(NOVITA, base_url="http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(RenderError, match=r"submit failed after 4 attempt\(s\): ConnectError"):
        remote.render(job, backend)
    assert remote.cache.journal.get(job.key) is None


@pytest.mark.parametrize("kind", ["slow", "drop", "reset", "malformed"])
def test_an_ambiguous_gmi_submit_is_reconciled_from_the_request_list(remote: rf.Remote, kind: str) -> None:
    remote.fake.fault(kind, phase="submit", **SLOW)
    _, result = render(remote, GMI, **SHORT_READ)
    stats = remote.fake.stats()
    assert result.info["reconciled"] is True
    assert stats["submissions"] == {rf.MODEL["gmi_wan21_i2v"]: 1}  # found in the list, not sent twice
    assert result.request_id == remote.fake.jobs()[0]["id"]
    assert stats["lists"] == {rf.MODEL["gmi_wan21_i2v"]: 1}
    assert "ambiguous" in result.info["notes"][0]


@pytest.mark.parametrize("kind", ["500", "502"])
def test_a_gmi_submit_missing_from_the_list_is_never_sent_again(remote: rf.Remote, kind: str) -> None:
    # The fake refused these (no job), but a 5xx after the body was sent may hide an accepted job, and a list
    # that does not show it proves nothing (it may lag, or leave requests out): fail, do not resend.
    remote.fake.fault(kind, phase="submit")
    job, backend = remote.job(GMI)
    with pytest.raises(AmbiguousSubmit, match=rf"HTTP {kind}.*shows no request.*proves nothing.*resubmit_ambiguous"):
        remote.render(job, backend)
    stats = remote.fake.stats()
    assert stats["total"]["submit_attempts"] == 1
    assert stats["lists"] == {rf.MODEL["gmi_wan21_i2v"]: 2}  # listed again a moment later: a list may lag
    entry = remote.cache.journal.get(job.key)
    assert entry is not None and entry["state"] == "ambiguous" and entry["request_id"] is None


@pytest.mark.parametrize("provider", ["aiml", "novita"])
@pytest.mark.parametrize("kind", ["slow", "drop", "500"])
def test_an_ambiguous_submit_elsewhere_is_reported_never_resent(remote: rf.Remote, provider: str, kind: str) -> None:
    remote.fake.fault(kind, phase="submit", **SLOW)
    job, backend = remote.job(SCENES[provider], **SHORT_READ)
    with pytest.raises(AmbiguousSubmit, match=r"may have been accepted.*Nothing was sent again") as err:
        remote.render(job, backend)
    assert "Check your" in str(err.value)
    assert counts(remote, "submit_attempts") == 1  # never sent twice
    assert counts(remote, "polls") == 0
    entry = remote.cache.journal.get(job.key)
    assert entry is not None and entry["state"] == "ambiguous" and entry["request_id"] is None
    # A rerun sends nothing on its own...
    with pytest.raises(AmbiguousSubmit, match=r"An earlier submit .*`resubmit_ambiguous=\[s\]`"):
        remote.render(job, backend)
    assert counts(remote, "submit_attempts") == 1
    # ...and submits again when the user says so, noting that the last one was ambiguous.
    result = remote.render(dataclasses.replace(job, resubmit_ambiguous=True), backend)
    assert "ambiguous" in result.info["notes"][0] and "resubmit_ambiguous" in result.info["notes"][0]
    assert counts(remote, "submissions") == (1 if kind == "500" else 2)


def test_a_refused_submit_is_a_provider_error_with_the_reason(remote: rf.Remote) -> None:
    remote.fake.configure(api_keys={"novita": "the-right-key"})
    job, backend = remote.job(NOVITA)
    with pytest.raises(ProviderError, match=r"refused the submit \(HTTP 401\).*check that \$NOVITA_API_KEY") as e:
        remote.render(job, backend)
    assert rf.KEYS["NOVITA_API_KEY"] not in str(e.value)
    assert counts(remote, "submissions") == 0


# -- poll --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["500", "502", "503", "429", "slow", "drop", "malformed"])
def test_a_poll_fault_is_retried(remote: rf.Remote, kind: str) -> None:
    remote.fake.fault(kind, phase="poll", times=2, retry_after=0.1, **SLOW)
    _, result = render(remote, GMI, **SHORT_READ)
    assert result.info["retries"] == 2
    assert counts(remote, "submissions") == 1
    assert remote.fake.stats()["faults"] == {kind: 2}


def test_polls_that_keep_failing_give_up_and_keep_the_journal(remote: rf.Remote) -> None:
    remote.fake.fault("502", phase="poll", times=-1)
    job, backend = remote.job(NOVITA)
    with pytest.raises(RenderError, match=r"status poll .* failed after 4 attempt\(s\).*rerun re-attaches"):
        remote.render(job, backend)
    entry = remote.cache.journal.get(job.key)
    assert entry is not None and entry["state"] == "submitted" and entry["request_id"]


@pytest.mark.parametrize("provider", ["gmi", "aiml", "novita"])
@pytest.mark.parametrize("kind", ["failed", "cancelled"])
def test_failed_or_cancelled_is_a_provider_error_with_the_reason(remote: rf.Remote, provider: str, kind: str) -> None:
    remote.fake.fault(kind, reason=f"content policy ({kind})")
    job, backend = remote.job(SCENES[provider])
    with pytest.raises(ProviderError, match=rf"content policy \({kind}\)") as err:
        remote.render(job, backend)
    assert err.value.request_id == remote.fake.jobs()[0]["id"]
    assert err.value.status == {"gmi": kind, "aiml": "failed", "novita": "TASK_STATUS_FAILED"}[provider]
    assert remote.cache.journal.get(job.key) is None  # final: a rerun renders it anew
    assert counts(remote, "downloads") == 0


def test_a_poll_answer_of_unknown_shape_fails_loudly(remote: rf.Remote, monkeypatch: pytest.MonkeyPatch) -> None:
    from wanbatch.testing.fakeprovider import protocols

    real = protocols.status_answer
    monkeypatch.setattr(protocols, "status_answer", lambda *a, **k: {**real(*a, **k), "status": "exploded"})
    job, backend = remote.job(GMI)
    with pytest.raises(ProviderError, match="shape wanbatch does not understand"):
        remote.render(job, backend)


# -- download ----------------------------------------------------------------------------------------
def test_a_download_404_is_a_download_error_and_nothing_is_kept(remote: rf.Remote) -> None:
    remote.fake.fault("404")
    job, backend = remote.job(NOVITA)
    ctx = remote.context()
    with pytest.raises(DownloadError, match="HTTP 404"):
        backend.render(job, ctx)
    assert list(ctx.workdir.iterdir()) == []
    entry = remote.cache.journal.get(job.key)
    assert entry is not None and entry["state"] == "succeeded"  # a rerun re-attaches and downloads
    result = remote.render(job, backend)
    assert result.info["reattached"] and counts(remote, "submissions") == 1


def test_a_truncated_download_is_retried(remote: rf.Remote) -> None:
    remote.fake.fault("truncate")
    _, result = render(remote, NOVITA)
    assert counts(remote, "downloads") == 2 and result.info["retries"] == 1
    assert result.video.stat().st_size > 1000


@pytest.mark.parametrize(
    ("kind", "match"),
    [("truncate", "RemoteProtocolError"), ("truncate_unsized", "cut short"), ("not_video", "not a video")],
)
def test_a_bad_download_never_passes(remote: rf.Remote, kind: str, match: str) -> None:
    remote.fake.fault(kind, times=-1)
    job, backend = remote.job(NOVITA)
    ctx = remote.context()
    with pytest.raises(DownloadError, match=match):
        backend.render(job, ctx)
    assert list(ctx.workdir.iterdir()) == []


def test_an_expired_url_is_reported_then_rendered_again(remote: rf.Remote) -> None:
    remote.fake.fault("expired")
    _, result = render(remote, GMI)
    assert counts(remote, "submissions") == 2
    assert "expired" in result.info["notes"][0] and "submitting scene `s` again" in result.info["notes"][0]
    assert result.request_id == remote.fake.jobs()[1]["id"]


def test_a_url_that_expires_twice_gives_up(remote: rf.Remote) -> None:
    remote.fake.fault("expired", times=2)
    job, backend = remote.job(AIML)
    with pytest.raises(DownloadError, match="twice"):
        remote.render(job, backend)
    assert counts(remote, "submissions") == 2  # re-rendered once, not forever
