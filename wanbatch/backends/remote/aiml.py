"""AI/ML API's video generations: Wan 2.7 image-to-video (see ../shared/API_NOTES.md).

    POST {base}/v2/video/generations                      flat body with `model`  -> {"id", "status"}
    GET  {base}/v2/video/generations?generation_id=ID     -> {"status", "video": {"url"}, "error"}

`completed` is success; `failed`/`error` (and `cancelled`) are failures; any other status means still
running. The first frame travels as a URL or as a data URI of the local file; `audio_url` must be a URL.
AI/ML API has no request list, so an ambiguous submit is reported, not reconciled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from wanbatch.backends.remote.base import RemoteBackend, Status
from wanbatch.backends.remote.scene import (
    SEED_MAX,
    check_media,
    check_scene,
    choice,
    drop_none,
    in_range,
    text,
    whole_seconds,
)
from wanbatch.config.backends import AimlConfig, RemoteConfig
from wanbatch.errors import Issue, ProviderError

if TYPE_CHECKING:
    from wanbatch.core.job import Job
    from wanbatch.core.scene import Scene

FAILED = {"failed", "error", "cancelled", "canceled"}


class AimlWan27I2V(RemoteBackend):
    """Wan 2.7 image-to-video on AI/ML API: 720p or 1080p, 2-15 s (default 10), optional driving audio."""

    name = "aiml_wan27_i2v"
    provider: ClassVar[str] = "aiml"
    provider_title: ClassVar[str] = "AI/ML API"
    config_type: ClassVar[type[RemoteConfig]] = AimlConfig
    takes: ClassVar[frozenset[str]] = frozenset(
        {"prompt", "negative_prompt", "image", "audio", "resolution", "duration", "prompt_extend", "watermark"}
    )

    def prepare(self, scene: Scene, issues: list[Issue], *, chained: bool = False) -> dict[str, Any]:
        check_scene(self, scene, issues, chained=chained)
        check_media(self, scene, issues, "image", "image_url", send_as="either", required=True, chained=chained)
        check_media(self, scene, issues, "audio", "audio_url", send_as="url")
        resolution = choice(scene, issues, "resolution", scene.resolution, ["720P", "1080P"])
        expand = True if scene.prompt_extend is None else scene.prompt_extend
        return drop_none(
            {
                "prompt": text(scene, issues, "prompt", required=True),
                "negative_prompt": text(scene, issues, "negative_prompt", required=False, max_len=500),
                "resolution": (resolution or "1080P").lower(),
                # The doc hides its duration enum: 2-15 s are sent, and the server has the last word.
                "duration": whole_seconds(scene, issues, range(2, 16), 10, "from 2 to 15"),
                "enable_prompt_expansion": expand,
                # The doc lists `enhance_prompt` beside it, described the same way and also true by default
                # (L56-65): a `prompt_extend: false` must turn off both. Kept out of the key when true, as
                # before it was sent (the server's default was true then too).
                "enhance_prompt": None if expand else False,
                "watermark": False if scene.watermark is None else scene.watermark,
                "seed": in_range(scene, issues, "seed", scene.seed, 0, SEED_MAX),
            }
        )

    def body(self, job: Job) -> dict[str, Any]:
        image = job.inputs["image"]
        body = {
            "model": self.model,
            **job.params,
            "enhance_prompt": job.params["enable_prompt_expansion"],
            "image_url": self.media_url(image) if image.url else self.image_data(image),
        }
        if "audio" in job.inputs:
            body["audio_url"] = self.media_url(job.inputs["audio"])
        return body

    def read_submit(self, data: Any) -> str:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            raise ProviderError(f"AI/ML API answered the submit without a generation `id`: {str(data)[:200]}")
        return data["id"]

    def status_request(self, request_id: str) -> tuple[str, dict[str, str] | None]:
        return self.api_url(), {"generation_id": request_id}

    def read_status(self, data: Any, request_id: str) -> Status:
        raw = data.get("status") if isinstance(data, dict) else None
        if not isinstance(raw, str):
            raise ProviderError(
                f"AI/ML API's status of generation {request_id} has no `status`: {str(data)[:200]}",
                request_id=request_id,
            )
        if raw in FAILED:
            return Status("failed", raw, reason=_reason(data.get("error")))
        if raw != "completed":
            return Status("running", raw)
        video = data.get("video")
        if not isinstance(video, dict) or not isinstance(video.get("url"), str):
            raise ProviderError(
                f"AI/ML API marked generation {request_id} completed without `video.url`",
                request_id=request_id,
                status=raw,
            )
        return Status("succeeded", raw, video_url=video["url"])

    def seconds_of_video(self, params: Mapping[str, Any]) -> float:
        return float(params.get("duration", 10))


def _reason(error: Any) -> str | None:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("name") or error) if error else None
    return str(error) if error else None


__all__ = ["AimlWan27I2V"]
