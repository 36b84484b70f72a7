"""Every value a provider cannot honour is a plan-time issue naming scene, field, value and what is
allowed; nothing is sent (the fake counts zero requests of any kind)."""

from __future__ import annotations

from typing import Any

import pytest

from wanbatch.errors import ConfigError

import remote_fixtures as rf
from remote_fixtures import *  # noqa: F403 - fixtures

UP = {"target": "memory://wanbatch-validation", "public_url": "http://files.example/v"}
URL = "https://media.example.com"

CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    # GMI Wan 2.1 I2V: image data, 1280x720, 5|10 s, no negative prompt/last frame/audio/knobs
    ("gmi_wan21_i2v", {"prompt": "p"}, {"image"}),
    ("gmi_wan21_i2v", {"prompt": "p", "image": f"{URL}/a.png"}, {"image"}),
    ("gmi_wan21_i2v", {"image": "first.png"}, {"prompt"}),
    ("gmi_wan21_i2v", {"prompt": "p", "image": "first.png", "duration": 7}, {"duration"}),
    ("gmi_wan21_i2v", {"prompt": "p", "image": "first.png", "duration": 5.5}, {"duration"}),
    ("gmi_wan21_i2v", {"prompt": "p", "image": "first.png", "resolution": "1080P"}, {"resolution"}),
    ("gmi_wan21_i2v", {"prompt": "p", "image": "first.png", "width": 832, "height": 480}, {"width/height"}),
    (
        "gmi_wan21_i2v",
        {
            "prompt": "p",
            "image": "first.png",
            "negative_prompt": "x",
            "last_image": "last.png",
            "audio": "voice.wav",
            "steps": 20,
            "fps": 16,
            "num_frames": 81,
            "watermark": True,
        },
        {"negative_prompt", "last_image", "audio", "steps", "fps", "num_frames", "watermark"},
    ),
    ("gmi_wan21_i2v", {"prompt": "p", "image": "first.png", "seed": 2**31}, {"seed"}),
    ("gmi_wan21_i2v", {"prompt": "p", "image": "first.png", "model": "wan2.1-t2v"}, {"model"}),
    # GMI FLF2V: both frames required
    ("gmi_wan21_flf2v", {"prompt": "p", "image": "first.png"}, {"last_image"}),
    ("gmi_wan21_flf2v", {"prompt": "p", "last_image": f"{URL}/b.png"}, {"image", "last_image"}),
    # GMI wan2.7: URLs (or an uploader), limits of the doc
    ("gmi_wan27_i2v", {"image": "first.png"}, {"image"}),
    ("gmi_wan27_i2v", {"image": f"{URL}/a.png", "audio": "voice.wav"}, {"audio"}),
    (
        "gmi_wan27_i2v",
        {"image": f"{URL}/a.png", "prompt": "x" * 1501, "negative_prompt": "y" * 501},
        {"prompt", "negative_prompt"},
    ),
    ("gmi_wan27_i2v", {"image": f"{URL}/a.png", "resolution": "480P"}, {"resolution"}),
    ("gmi_wan27_i2v", {"image": f"{URL}/a.png", "duration": 16}, {"duration"}),
    ("gmi_wan27_i2v", {"image": f"{URL}/a.png", "duration": 1}, {"duration"}),
    ("gmi_wan27_i2v", {"image": f"{URL}/a.png", "width": 1920, "height": 1080}, {"width", "height"}),
    ("gmi_wan27_i2v", {"image": f"{URL}/a.png", "audio": f"{URL}/a.ogg"}, {"audio"}),
    # AI/ML API: image required, audio as URL, 720P|1080P, 2-15 s
    ("aiml_wan27_i2v", {"prompt": "p"}, {"image"}),
    ("aiml_wan27_i2v", {"prompt": "p", "image": "first.png", "audio": "voice.wav"}, {"audio"}),
    (
        "aiml_wan27_i2v",
        {"prompt": "p", "image": "first.png", "last_image": "last.png", "first_clip": f"{URL}/c.mp4"},
        {"last_image", "first_clip"},
    ),
    (
        "aiml_wan27_i2v",
        {"prompt": "p", "image": "first.png", "duration": 20, "resolution": "480P"},
        {"duration", "resolution"},
    ),
    ("aiml_wan27_i2v", {"prompt": "p", "image": "first.png", "negative_prompt": "n" * 501}, {"negative_prompt"}),
    # Novita T2V: no media, 5 s, four sizes, knob ranges, three LoRAs
    ("novita_wan21_t2v", {"prompt": "p", "image": "first.png"}, {"image"}),
    ("novita_wan21_t2v", {"prompt": "p", "duration": 10}, {"duration"}),
    ("novita_wan21_t2v", {"prompt": "p", "resolution": "1080P"}, {"resolution"}),
    ("novita_wan21_t2v", {"prompt": "p", "width": 1024, "height": 576}, {"width/height"}),
    ("novita_wan21_t2v", {"prompt": "p", "width": 832}, {"width/height"}),
    ("novita_wan21_t2v", {"prompt": "p", "width": 480, "height": 832, "resolution": "720P"}, {"resolution"}),
    (
        "novita_wan21_t2v",
        {"prompt": "p", "steps": 50, "guidance_scale": 12, "flow_shift": 0.5},
        {"steps", "guidance_scale", "flow_shift"},
    ),
    ("novita_wan21_t2v", {"prompt": "p", "loras": [{"path": str(i)} for i in range(4)]}, {"loras"}),
    ("novita_wan21_t2v", {"prompt": "p", "prompt_extend": True}, {"prompt_extend"}),
    ("novita_wan21_t2v", {"prompt": "x" * 2001}, {"prompt"}),
    ("novita_wan21_t2v", {}, {"prompt"}),
]


def issues_of(remote: rf.Remote, scenes: list[dict[str, Any]], **kw: Any) -> list[Any]:
    with pytest.raises(ConfigError) as err:
        remote.plan(scenes, **kw)
    return err.value.issues


def assert_nothing_sent(remote: rf.Remote) -> None:
    assert remote.fake.stats()["total"] == {}
    assert remote.recorder.requests == []


@pytest.mark.parametrize(
    ("backend", "scene", "fields"), CASES, ids=[f"{b}-{'+'.join(sorted(f))}-{i}" for i, (b, _, f) in enumerate(CASES)]
)
def test_a_value_the_provider_cannot_honour_is_an_issue(
    remote: rf.Remote, backend: str, scene: dict[str, Any], fields: set[str]
) -> None:
    issues = issues_of(remote, [{"id": "bad", "backend": backend, "seed": 1, **scene}], default=backend)
    assert {i.field for i in issues} == fields
    assert all(i.scene == "bad" for i in issues)
    assert_nothing_sent(remote)


def test_an_issue_names_scene_field_value_and_what_is_allowed(remote: rf.Remote) -> None:
    (issue,) = issues_of(
        remote,
        [{"id": "intro", "prompt": "p", "image": "first.png", "duration": 7, "seed": 1, "backend": "gmi_wan21_i2v"}],
        default="gmi_wan21_i2v",
    )
    assert str(issue) == "scene `intro`: `duration` = 7.0 is not allowed; whole seconds, 5 or 10"


def test_every_scene_is_checked_and_nothing_is_sent_if_one_is_bad(remote: rf.Remote) -> None:
    scenes = [
        {"id": "ok1", "prompt": "fine", "seed": 1},
        {"id": "ok2", "backend": "gmi_wan21_i2v", "prompt": "fine", "image": "first.png", "seed": 2},
        {"id": "bad1", "prompt": "p", "duration": 9, "seed": 3},
        {"id": "bad2", "backend": "aiml_wan27_i2v", "prompt": "p", "seed": 4},
    ]
    issues = issues_of(remote, scenes)
    assert {(i.scene, i.field) for i in issues} == {("bad1", "duration"), ("bad2", "image")}
    assert_nothing_sent(remote)


def test_chaining_needs_a_model_that_takes_a_first_frame(remote: rf.Remote) -> None:
    scenes = [{"id": "a", "prompt": "p", "seed": 1}, {"id": "b", "prompt": "q", "seed": 2, "chain_from": "a"}]
    issues = issues_of(remote, scenes)
    assert [(i.scene, i.field) for i in issues] == [("b", "chain_from")]


def test_chaining_into_a_url_only_model_needs_an_uploader(remote: rf.Remote) -> None:
    scenes = [
        {"id": "a", "prompt": "p", "seed": 1},
        {"id": "b", "backend": "gmi_wan27_i2v", "seed": 2, "chain_from": "a"},
    ]
    issues = issues_of(remote, scenes)
    assert [(i.scene, i.field) for i in issues] == [("b", "chain_from")]
    assert "uploader" in issues[0].allowed
    plan = remote.plan(scenes, overrides={"gmi_wan27_i2v": {"uploader": UP}})
    assert [j.parent for j in plan.jobs] == [None, "a"]
    assert_nothing_sent(remote)


def test_wan27_frame_and_audio_limits_are_checked_on_local_files(remote: rf.Remote) -> None:
    issues = issues_of(
        remote,
        [{"id": "s", "backend": "gmi_wan27_i2v", "image": "tiny.png", "audio": "short.wav", "seed": 1}],
        default="gmi_wan27_i2v",
        overrides={"gmi_wan27_i2v": {"uploader": UP}},
    )
    by_field = {i.field: i.allowed for i in issues}
    assert set(by_field) == {"image", "audio"}
    assert "360-2000 px" in by_field["image"] and "100x80" in by_field["image"]
    assert "3 to 30 s" in by_field["audio"]


@pytest.mark.parametrize("env", list(rf.KEYS))
def test_a_missing_key_is_an_issue_before_any_request(
    remote: rf.Remote, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    monkeypatch.delenv(env)
    backend = {"GMI_API_KEY": "gmi_wan21_i2v", "AIML_API_KEY": "aiml_wan27_i2v", "NOVITA_API_KEY": "novita_wan21_t2v"}[
        env
    ]
    scene = {"id": "s", "backend": backend, "prompt": "p", "image": "first.png", "seed": 1}
    if backend == "novita_wan21_t2v":
        del scene["image"]
    issues = issues_of(remote, [scene], default=backend)
    assert [(i.scene, i.field) for i in issues] == [(None, f"${env}")]
    assert f"export {env}=" in issues[0].allowed
    assert_nothing_sent(remote)


def test_bad_backend_options_are_issues(remote: rf.Remote) -> None:
    overrides = {
        "novita_wan21_t2v": {
            "image_encoding": "hex",
            "uploader": {"target": "nosuchfs://x", "public_url": "ftp://x"},
            "requests_per_second": 0,
            "poll": {"jitter": -1},
        }
    }
    issues = issues_of(remote, [{"id": "s", "prompt": "p", "seed": 1}], overrides=overrides)
    assert {i.field for i in issues} == {  # every range and choice at once
        "backends.novita_wan21_t2v.image_encoding",
        "backends.novita_wan21_t2v.uploader.target",
        "backends.novita_wan21_t2v.uploader.public_url",
        "backends.novita_wan21_t2v.requests_per_second",
        "backends.novita_wan21_t2v.poll.jitter",
    }
    assert_nothing_sent(remote)


@pytest.mark.parametrize(
    ("option", "field", "allowed"),
    [
        (
            {"max_in_fligth": 3},
            "max_in_fligth",
            "unknown option (did you mean max_in_flight?); known: api_key_env, base_url",
        ),
        (
            {"poll": {"initial": 1}},
            "poll.initial",
            "unknown option (did you mean initial_s?); known: backoff, initial_s",
        ),
        ({"poll": {"initial_s": "soon"}}, "poll.initial_s", "a number"),
        ({"uploader": {"target": "memory://x"}}, "uploader.public_url", "a string: it has no default"),
        ({"webhook_url": ["x"]}, "webhook_url", "a string, or null"),
    ],
)
def test_an_unknown_or_mistyped_backend_option_names_itself(
    remote: rf.Remote, option: dict[str, Any], field: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as err:
        remote.plan([{"id": "s", "prompt": "p", "seed": 1}], overrides={"novita_wan21_t2v": option})
    [issue] = err.value.issues
    assert issue.field == f"backends.novita_wan21_t2v.{field}" and allowed in issue.allowed
    assert_nothing_sent(remote)


def test_every_config_names_itself_and_validates(remote: rf.Remote) -> None:
    for name in rf.REMOTE:
        backend = remote.backend(name)
        assert backend.config.name == name == backend.name
        issues: list[Any] = []
        backend.check_ready(issues)
        assert issues == []
        assert backend.model == rf.MODEL[name]
