"""The exact request body each remote backend sends for representative scenes, over real sockets."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import fsspec
import pytest

from wanbatch.av.ffmpeg import probe
from wanbatch.av.files import sha256_file

import remote_fixtures as rf
from remote_fixtures import *  # noqa: F403 - fixtures

URL = "https://media.example.com"


def render_one(remote: rf.Remote, scene: dict[str, Any], **overrides: Any) -> tuple[dict[str, Any], Any]:
    """Render one scene against the fake; return the one submit body sent and the planned job."""
    job, backend = remote.job({"id": "s", **scene}, **overrides)
    result = remote.render(job, backend)
    bodies = remote.recorder.bodies("POST")
    assert len(bodies) == 1, remote.recorder.urls()
    assert remote.fake.stats()["submissions"] == {rf.MODEL[backend.name]: 1}
    assert probe(result.video).has_video
    assert result.model == rf.MODEL[backend.name]
    return bodies[0], job


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_gmi_wan21_i2v_sends_the_image_as_data(remote: rf.Remote) -> None:
    body, job = render_one(
        remote,
        {
            "backend": "gmi_wan21_i2v",
            "prompt": "An eagle soars.",
            "image": "first.png",
            "duration": 10,
            "prompt_extend": True,
            "seed": 42,
            "resolution": "720P",
        },
    )
    assert body == {
        "model": "Wan-AI_Wan2.1-I2V-14B-720P",
        "payload": {
            "prompt": "An eagle soars.",
            "path_to_image": b64(remote.root / "first.png"),  # plain base64 by default (issue 13, item 10)
            "video_length": 10,
            "prompt_extend": True,
            "seed": 42,
        },
    }
    assert job.params == {"prompt": "An eagle soars.", "video_length": 10, "prompt_extend": True, "seed": 42}
    assert job.seconds == 10


def test_gmi_wan21_i2v_defaults_and_a_data_uri(remote: rf.Remote) -> None:
    body, _ = render_one(
        remote, {"backend": "gmi_wan21_i2v", "prompt": "p", "image": "first.png", "seed": 3}, image_encoding="data_uri"
    )
    payload = body["payload"]
    assert payload["path_to_image"] == rf.data_uri(remote.root / "first.png")
    assert {k: v for k, v in payload.items() if k != "path_to_image"} == {
        "prompt": "p",
        "video_length": 5,
        "prompt_extend": False,
        "seed": 3,
    }


def test_gmi_wan21_flf2v_sends_both_frames(remote: rf.Remote) -> None:
    body, _ = render_one(
        remote,
        {
            "backend": "gmi_wan21_flf2v",
            "prompt": "Day to night.",
            "image": "first.png",
            "last_image": "last.png",
            "seed": 7,
            "width": 1280,
            "height": 720,
        },
    )
    assert body == {
        "model": "Wan-AI_Wan2.1-FLF2V-14B-720P",
        "payload": {
            "prompt": "Day to night.",
            "first_frame_image": b64(remote.root / "first.png"),  # "Base64 image" (doc L59-60)
            "last_frame_image": b64(remote.root / "last.png"),
            "video_length": 5,
            "prompt_extend": False,
            "seed": 7,
        },
    }


def test_gmi_wan27_i2v_sends_every_input_as_a_url(remote: rf.Remote) -> None:
    body, job = render_one(
        remote,
        {
            "backend": "gmi_wan27_i2v",
            "prompt": "A slow pan.",
            "negative_prompt": "blurry",
            "image": f"{URL}/a.jpg",
            "last_image": f"{URL}/b.jpg",
            "audio": f"{URL}/v.mp3",
            "first_clip": f"{URL}/c.mp4",
            "resolution": "720P",
            "duration": 8,
            "prompt_extend": False,
            "watermark": True,
            "seed": 987654321,
        },
    )
    assert body == {
        "model": "wan2.7-i2v",
        "payload": {
            "prompt": "A slow pan.",
            "negative_prompt": "blurry",
            "first_frame": f"{URL}/a.jpg",
            "last_frame": f"{URL}/b.jpg",
            "driving_audio": f"{URL}/v.mp3",
            "first_clip": f"{URL}/c.mp4",
            "resolution": "720P",
            "duration": 8,
            "prompt_extend": False,
            "watermark": True,
            "seed": 987654321,
        },
    }
    assert job.seconds == 8


def test_gmi_wan27_i2v_defaults(remote: rf.Remote) -> None:
    body, _ = render_one(remote, {"backend": "gmi_wan27_i2v", "image": f"{URL}/a.jpg", "seed": 0})
    assert body["payload"] == {
        "first_frame": f"{URL}/a.jpg",
        "resolution": "1080P",
        "duration": 5,
        "prompt_extend": True,
        "watermark": False,
        "seed": 0,
    }


def test_gmi_wan27_i2v_uploads_local_files_when_an_uploader_is_set(remote: rf.Remote) -> None:
    uploader = {"target": "memory://wanbatch-test-up", "public_url": "http://files.example/up"}
    body, _ = render_one(
        remote,
        {"backend": "gmi_wan27_i2v", "prompt": "p", "image": "first.png", "audio": "voice.wav", "seed": 5},
        uploader=uploader,
    )
    digest = sha256_file(remote.root / "first.png")
    audio_digest = sha256_file(remote.root / "voice.wav")
    assert body["payload"]["first_frame"] == f"http://files.example/up/{digest}.png"
    assert body["payload"]["driving_audio"] == f"http://files.example/up/{audio_digest}.wav"
    fs = fsspec.filesystem("memory")
    assert fs.cat(f"/wanbatch-test-up/{digest}.png") == (remote.root / "first.png").read_bytes()


def test_aiml_wan27_i2v_flat_body(remote: rf.Remote) -> None:
    body, job = render_one(
        remote,
        {
            "backend": "aiml_wan27_i2v",
            "prompt": "A harbour.",
            "negative_prompt": "text",
            "image": "first.png",
            "audio": f"{URL}/voice.wav",
            "resolution": "720P",
            "duration": 6,
            "prompt_extend": False,
            "seed": 11,
        },
    )
    assert body == {
        "model": "alibaba/wan-2-7-i2v",
        "prompt": "A harbour.",
        "negative_prompt": "text",
        "image_url": rf.data_uri(remote.root / "first.png"),
        "audio_url": f"{URL}/voice.wav",
        "resolution": "720p",
        "duration": 6,
        "enable_prompt_expansion": False,
        "enhance_prompt": False,
        "watermark": False,
        "seed": 11,
    }
    assert job.seconds == 6


def test_aiml_wan27_i2v_defaults_with_an_image_url(remote: rf.Remote) -> None:
    body, job = render_one(remote, {"backend": "aiml_wan27_i2v", "prompt": "p", "image": f"{URL}/a.png", "seed": 1})
    assert body == {
        "model": "alibaba/wan-2-7-i2v",
        "prompt": "p",
        "image_url": f"{URL}/a.png",
        "resolution": "1080p",
        "duration": 10,
        "enable_prompt_expansion": True,
        "enhance_prompt": True,
        "watermark": False,
        "seed": 1,
    }
    assert job.seconds == 10


def test_novita_wan21_t2v_every_knob(remote: rf.Remote) -> None:
    body, job = render_one(
        remote,
        {
            "prompt": "A fox in snow.",
            "negative_prompt": "low quality",
            "width": 480,
            "height": 832,
            "steps": 20,
            "guidance_scale": 6.5,
            "flow_shift": 3,
            "seed": 9_000_000_000,
            "loras": [{"path": "https://loras.example/a.safetensors", "scale": 0.8}, {"path": "b"}],
        },
        webhook_url="https://hooks.example/wanbatch",
    )
    assert body == {
        "model_name": "wan2.1-t2v",
        "prompt": "A fox in snow.",
        "negative_prompt": "low quality",
        "width": 480,
        "height": 832,
        "seed": 9_000_000_000,
        "steps": 20,
        "guidance_scale": 6.5,
        "flow_shift": 3.0,
        "loras": [{"path": "https://loras.example/a.safetensors", "scale": 0.8}, {"path": "b", "scale": 1.0}],
        "extra": {"webhook": {"url": "https://hooks.example/wanbatch"}},
    }
    assert "extra" not in job.params  # the webhook does not change pixels: not in the cache key
    assert job.seconds == 5


@pytest.mark.parametrize(
    ("scene", "size"), [({}, (832, 480)), ({"resolution": "720P"}, (1280, 720)), ({"resolution": "480P"}, (832, 480))]
)
def test_novita_wan21_t2v_defaults(remote: rf.Remote, scene: dict[str, Any], size: tuple[int, int]) -> None:
    body, _ = render_one(remote, {"prompt": "p", "seed": 2, **scene})
    assert body == {
        "model_name": "wan2.1-t2v",
        "prompt": "p",
        "width": size[0],
        "height": size[1],
        "seed": 2,
        "steps": 30,
        "guidance_scale": 5.0,
        "flow_shift": 5.0,
    }


def test_the_key_travels_only_in_the_authorization_header_of_api_calls(remote: rf.Remote) -> None:
    job, backend = remote.job({"id": "s", "prompt": "p", "seed": 1})
    remote.render(job, backend)
    for request in remote.recorder.requests:
        if "/_fake/videos/" in str(request.url):  # the storage host never sees the key
            assert "authorization" not in request.headers
        else:
            assert request.headers["authorization"] == f"Bearer {rf.KEYS['NOVITA_API_KEY']}"
