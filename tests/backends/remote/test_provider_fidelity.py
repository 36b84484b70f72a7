"""What the provider documents say, honoured (issue 13, items 10-11): GMI's image encoding per document,
AI/ML's two prompt-expansion flags and its 15 s polls, Novita's `video_url_ttl` as a (float) string."""

from __future__ import annotations

import base64
import inspect
import time
from pathlib import Path
from typing import Any

import pytest

from wanbatch.backends.remote.base import PollSchedule
from wanbatch.backends.remote.novita import NovitaWan21T2V, eta_seconds, seconds
from wanbatch.backends.remote.settings import check_settings
from wanbatch.config.backends import AimlConfig, GmiConfig, RemoteConfig
from wanbatch.config.load import CONF_DIR, backend_config
from wanbatch.errors import Issue

import remote_fixtures as rf
from remote_fixtures import *  # noqa: F403 - fixtures

FLF = {
    "id": "s",
    "backend": "gmi_wan21_flf2v",
    "prompt": "Day to night.",
    "image": "first.png",
    "last_image": "last.png",
    "seed": 4,
}
I2V = {"id": "s", "backend": "gmi_wan21_i2v", "prompt": "An eagle.", "image": "first.png", "seed": 2}
AIML = {"id": "s", "backend": "aiml_wan27_i2v", "prompt": "A harbour.", "image": "first.png", "seed": 3}


def payload(remote: rf.Remote) -> dict[str, Any]:
    (body,) = remote.recorder.bodies()
    return body.get("payload", body)


# -- 10. GMI frame encoding --------------------------------------------------------------------------
def test_item10_gmi_flf2v_sends_plain_base64_as_its_document_says(remote: rf.Remote, assets: Path) -> None:
    job, backend = remote.job(FLF)
    remote.render(job, backend)
    sent = payload(remote)
    for field, name in (("first_frame_image", "first.png"), ("last_frame_image", "last.png")):
        assert not sent[field].startswith("data:")
        assert base64.b64decode(sent[field], validate=True) == (assets / name).read_bytes()


def test_item10_gmi_i2v_sends_plain_base64_too(remote: rf.Remote, assets: Path) -> None:
    job, backend = remote.job(I2V)
    remote.render(job, backend)
    assert base64.b64decode(payload(remote)["path_to_image"], validate=True) == (assets / "first.png").read_bytes()


def test_item10_image_encoding_stays_the_switch(remote: rf.Remote, assets: Path) -> None:
    job, backend = remote.job(FLF, image_encoding="data_uri")
    remote.render(job, backend)
    assert payload(remote)["first_frame_image"] == rf.data_uri(assets / "first.png")


def test_item10_aiml_sends_a_data_uri_its_uri_field_takes(remote: rf.Remote, assets: Path) -> None:
    job, backend = remote.job(AIML)
    remote.render(job, backend)
    assert payload(remote)["image_url"] == rf.data_uri(assets / "first.png")


def test_item10_each_backend_defaults_to_its_documents_encoding_and_says_where_it_read_it() -> None:
    # The default lives in the schema, with the document line it follows; the backend's YAML states the choice
    assert backend_config("gmi_wan21_flf2v").image_encoding == "base64"
    assert backend_config("gmi_wan21_i2v").image_encoding == "base64"
    assert backend_config("aiml_wan27_i2v").image_encoding == "data_uri"
    assert "gmi-wan2.1-flf2v-14b-720p.txt L59-60" in inspect.getsource(GmiConfig)
    assert "aimlapi-wan-2-7-i2v.txt L38-40" in inspect.getsource(AimlConfig)
    flf = (CONF_DIR / "backend" / "gmi_wan21_flf2v.yaml").read_text()
    assert "plain base64" in flf and "L59-60" in flf
    i2v = (CONF_DIR / "backend" / "gmi_wan21_i2v.yaml").read_text()
    assert "plain base64" in i2v and "does not say (L64)" in i2v
    aiml = (CONF_DIR / "backend" / "aiml_wan27_i2v.yaml").read_text()
    assert "data URI" in aiml and "L38-40" in aiml
    assert "image_encoding" not in (CONF_DIR / "backend" / "gmi_wan27_i2v.yaml").read_text()  # URLs only (L58-61)


# -- 11. AI/ML flags and polls, Novita's TTL --------------------------------------------------------------
@pytest.mark.parametrize(("prompt_extend", "expected"), [(None, True), (True, True), (False, False)])
def test_item11_aiml_sends_both_prompt_expansion_flags(
    remote: rf.Remote, prompt_extend: bool | None, expected: bool
) -> None:
    scene = AIML if prompt_extend is None else {**AIML, "prompt_extend": prompt_extend}
    job, backend = remote.job(scene)
    remote.render(job, backend)
    sent = payload(remote)
    assert (sent["enable_prompt_expansion"], sent["enhance_prompt"]) == (expected, expected)


def test_item11_aiml_prompt_extend_false_changes_the_key_true_keeps_it(remote: rf.Remote) -> None:
    # `enhance_prompt` defaulted to true on the server before it was sent: only `false` renders differently.
    default, _ = remote.job(AIML)
    extended, _ = remote.job({**AIML, "prompt_extend": True})
    plain, _ = remote.job({**AIML, "prompt_extend": False})
    assert "enhance_prompt" not in default.params and default.key == extended.key
    assert plain.params["enhance_prompt"] is False and plain.key != default.key


def test_item11_aiml_polls_every_15_seconds_as_documented() -> None:
    config = backend_config("aiml_wan27_i2v")  # as shipped: conf/backend/aiml_wan27_i2v.yaml over AimlConfig
    assert isinstance(config, RemoteConfig)
    issues: list[Issue] = []
    check_settings(config, "backends.aiml_wan27_i2v", issues)
    assert issues == []
    poll = config.poll
    schedule = PollSchedule(poll)
    waits = [schedule.first()] + [schedule.next(None) for _ in range(20)]
    assert all(15.0 <= w <= 15.0 * (1 + poll.jitter) for w in waits), waits


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("604800", 604800.0),
        ("604800.0", 604800.0),
        (604800, 604800.0),
        (604800.0, 604800.0),
        ("  3600.5 ", 3600.5),
        ("abc", None),
        (-1, None),
        ("0", None),
        (True, None),
        (None, None),
        ("nan", None),
    ],
)
def test_item11_novita_video_url_ttl_may_be_a_float_string(value: object, expected: float | None) -> None:
    assert seconds(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12, 12.0), ("3.5", 3.5), (0, 0.0), ("0", 0.0), (0.0, 0.0), (-4, 0.0), (None, None), ("soon", None), (True, None)],
)
def test_a_running_novita_tasks_eta_of_zero_is_a_hint_not_none(value: object, expected: float | None) -> None:
    assert eta_seconds(value) == expected
    backend = NovitaWan21T2V(backend_config("novita_wan21_t2v"))
    status = backend.read_status({"task": {"status": "TASK_STATUS_PROCESSING", "eta": value}}, "t1")
    assert status.state == "running" and status.eta_s == expected


def test_item11_novita_float_string_ttl_sets_the_journalled_expiry(
    remote: rf.Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wanbatch.testing.fakeprovider import protocols

    real = protocols.status_answer

    def float_ttl(*a: Any, **k: Any) -> Any:
        answer = real(*a, **k)
        for video in answer.get("videos") or []:
            video["video_url_ttl"] = "3600.5"
        return answer

    monkeypatch.setattr(protocols, "status_answer", float_ttl)
    job, backend = remote.job({"id": "s", "prompt": "A fox.", "seed": 1})
    t0 = time.time()
    remote.render(job, backend)
    entry = remote.cache.journal.get(job.key)
    assert entry is not None and t0 + 3600 <= entry["video_url_expires"] <= time.time() + 3600.5
