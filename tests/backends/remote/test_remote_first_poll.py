"""The first poll fits the job: a provider's `eta` where it gives one (asked early), else the render times
already observed for that backend, model, size and length, so the same shipped settings serve a fast job and a
slow one; the user's `poll.initial_s` where nothing is known (or `poll.learn: false`). The manifest's info says
what the first poll was based on."""

from __future__ import annotations

import pytest

import remote_fixtures as rf
from remote_fixtures import *  # noqa: F403 - fixtures

NOVITA = {"id": "s", "prompt": "A fox.", "seed": 1}
GMI = {"id": "s", "backend": "gmi_wan21_i2v", "prompt": "An eagle.", "image": "first.png", "seed": 2}
# The shipped first poll (20 s) would outlast these tests: a render that waited for it fails them by timing out.
SHIPPED_LIKE = {"initial_s": 30.0, "interval_s": 10.0, "max_interval_s": 60.0, "jitter": 0.2, "min_interval_s": 0.05}


def test_an_eta_provider_is_asked_early_and_polled_at_its_eta(remote: rf.Remote) -> None:
    remote.fake.configure(latency_s=0.8)
    job, backend = remote.job(NOVITA, poll=SHIPPED_LIKE)
    info = remote.render(job, backend).info
    assert info["first_poll"]["based_on"] == "provider eta, asked early"
    assert info["polls"] == 2  # early, which reads the eta; then at the eta, done
    assert info["seconds"] < 10  # not the 30 s of initial_s


def test_a_second_job_of_a_kind_is_polled_first_when_the_first_one_took(remote: rf.Remote) -> None:
    remote.fake.configure(latency_s=0.8)
    # The first render learns on a quick fixed interval: about eight polls.
    quick = {"initial_s": 0.1, "interval_s": 0.1, "backoff": 1.0, "jitter": 0.0, "min_interval_s": 0.05}
    job, backend = remote.job(GMI, poll=quick)
    first = remote.render(job, backend).info
    assert first["first_poll"]["based_on"] == "poll.initial_s" and first["polls"] >= 4
    # The next one of the same kind, under settings that alone would wait 30 s, polls once near 0.8 s.
    job, backend = remote.job({**GMI, "seed": 3}, poll=SHIPPED_LIKE)
    second = remote.render(job, backend).info
    basis = second["first_poll"]
    assert basis["based_on"] == "observed render times"
    assert basis["kind"] == f"gmi_wan21_i2v/{rf.MODEL['gmi_wan21_i2v']}/5s/video_length=5"
    assert 0.8 <= basis["expected_s"] < 5  # never before the job can be done; nowhere near 30 s
    assert second["polls"] == 1 and second["seconds"] < 10


def test_another_size_learns_nothing_from_this_one(remote: rf.Remote) -> None:
    remote.fake.configure(latency_s=0.3)
    quick = {"initial_s": 0.1, "interval_s": 0.1, "backoff": 1.0, "jitter": 0.0, "min_interval_s": 0.05}
    job, backend = remote.job({**NOVITA, "width": 832, "height": 480}, poll=quick)
    remote.render(job, backend)
    job, backend = remote.job({**NOVITA, "width": 1280, "height": 720}, poll=quick)
    assert remote.render(job, backend).info["first_poll"]["based_on"] == "provider eta, asked early"


@pytest.mark.parametrize("backend_scene", [NOVITA, GMI], ids=["novita", "gmi"])
def test_learn_off_keeps_the_users_first_poll(remote: rf.Remote, backend_scene: dict) -> None:
    remote.fake.configure(latency_s=0.2)
    poll = {"learn": False, "initial_s": 0.4, "interval_s": 5.0, "jitter": 0.0, "min_interval_s": 0.05}
    for seed in (1, 2):  # the second has a history it must not use
        job, backend = remote.job({**backend_scene, "seed": seed}, poll=poll)
        info = remote.render(job, backend).info
        assert info["first_poll"] == {"based_on": "poll.initial_s", "after_s": 0.4}
        assert info["polls"] == 1 and info["timings"]["provider"] >= 0.4


def test_a_reattached_request_says_so(remote: rf.Remote) -> None:
    job, backend = remote.job(NOVITA)
    remote.cache.journal.record(job.key, backend="novita_wan21_t2v", request_id="nope", state="submitted")
    info = remote.render(job, backend).info  # the fake forgot it: reported, then rendered anew
    assert info["first_poll"]["based_on"] in ("provider eta, asked early", "observed render times")


def test_observed_render_times_are_kept_apart_from_request_entries(remote: rf.Remote) -> None:
    journal = remote.cache.journal
    for took in (5.0, 1.0, 2.0):
        journal.observe("k", took)
    assert journal.expected("k") == 2.0 and journal.expected("other") is None
    assert list(journal.items()) == []  # `cache list` and re-attaching see only requests


def test_a_poll_timed_to_the_job_is_late_by_at_most_one_percent() -> None:
    """Shipped jitter (20%) spreads fixed-interval polls; a poll timed to when the job should be done (its
    observed render time, the provider's eta) waits at most 1% past it: 6 s, not 2 minutes, of a 10-minute job."""
    from wanbatch.backends.remote.base import TIMED_JITTER, PollSchedule
    from wanbatch.config.backends import RemoteConfig
    from wanbatch.config.load import backend_config

    config = backend_config("novita_wan21_t2v")
    assert isinstance(config, RemoteConfig)
    poll = config.poll
    assert poll.jitter == 0.2 and TIMED_JITTER == 0.01
    fixed = [PollSchedule(poll).first() for _ in range(200)]
    assert all(poll.initial_s <= w <= poll.initial_s * 1.2 for w in fixed)
    assert max(fixed) > poll.initial_s * 1.1  # the full jitter where nothing is known
    timed = [PollSchedule(poll, first_s=600.0, timed=True).first() for _ in range(200)]
    assert all(600.0 <= w <= 606.0 for w in timed)
    at_eta = [PollSchedule(poll).next(50.0) for _ in range(200)]  # (an eta past max_interval_s is cut to it)
    assert all(51.05 <= w <= 51.05 * 1.01 for w in at_eta)


def test_a_poll_that_went_out_late_does_not_teach_that_jobs_take_longer(remote: rf.Remote, monkeypatch) -> None:
    """A busy client (fifty jobs landing at once) sends a poll late; the job it finds done took no longer for
    that. What is learnt is when the poll was due, or each late poll would make the next jobs' first polls later
    still (a job done only after that is found running by the next first poll, and its eta says the time)."""
    from wanbatch.backends.remote import run as run_module

    remote.fake.configure(latency_s=0.2)
    job, backend = remote.job(NOVITA, poll=SHIPPED_LIKE)
    kind = backend.render_kind(job)
    for _ in range(3):
        remote.cache.journal.observe(kind, 0.4)  # such jobs were seen done 0.4 s after their submit
    real_wait, waits = run_module.Run.wait, []

    def late(self, seconds):  # the first poll goes out 3 s after it was due
        waits.append(seconds)
        return real_wait(self, seconds + (3.0 if len(waits) == 1 else 0.0))

    monkeypatch.setattr(run_module.Run, "wait", late)
    info = remote.render(job, backend).info
    assert info["first_poll"]["based_on"] == "observed render times" and info["polls"] == 1
    assert info["timings"]["provider"] >= 3.0  # it was late indeed
    learnt = remote.cache.journal._db.get("render-time:" + kind)
    assert len(learnt) == 4 and learnt[-1] <= 0.4 * 1.05 + 0.001, learnt  # when it was due, not 3.4 s


def test_jobs_that_got_slower_teach_it_through_the_eta(remote: rf.Remote) -> None:
    """The other way: such jobs were done in 0.1 s, this one takes 0.6 s. Its first poll finds it running, the
    provider's eta says when it will be done, and that is what is learnt (the next first poll comes then)."""
    remote.fake.configure(latency_s=0.6)
    job, backend = remote.job(NOVITA, poll=SHIPPED_LIKE)
    kind = backend.render_kind(job)
    for _ in range(3):
        remote.cache.journal.observe(kind, 0.1)
    info = remote.render(job, backend).info
    assert info["first_poll"]["expected_s"] == 0.1 and info["polls"] == 2
    learnt = remote.cache.journal._db.get("render-time:" + kind)
    assert learnt[-1] >= 0.6, learnt  # never before the job can be done
