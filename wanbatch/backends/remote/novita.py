"""Novita AI's async API: Wan 2.1 text-to-video (see ../shared/API_NOTES.md).

    POST {base}/v3/async/wan-t2v                      {"model_name": "wan2.1-t2v", ...}  -> {"task_id"}
    GET  {base}/v3/async/task-result?task_id=ID       -> {"task": {"status", "reason", "eta", ...},
                                                          "videos": [{"video_url", "video_url_ttl", ...}]}

Polls follow the task's `eta` hint. Clips are 5 s at one of four sizes. Novita has no request list, so an
ambiguous submit is reported, not reconciled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from wanbatch.backends.remote.base import RemoteBackend, Status
from wanbatch.backends.remote.scene import check_scene, drop_none, in_range, text
from wanbatch.config.backends import NovitaConfig, RemoteConfig
from wanbatch.errors import Issue, ProviderError

if TYPE_CHECKING:
    from wanbatch.core.job import Job
    from wanbatch.core.scene import Scene

SIZES = ((832, 480), (480, 832), (1280, 720), (720, 1280))
BY_RESOLUTION = {"480P": (832, 480), "720P": (1280, 720)}  # landscape; give width/height for portrait
SEED_MAX = 9_999_999_999
RUNNING = {"TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING"}


class NovitaWan21T2V(RemoteBackend):
    """Wan 2.1 text-to-video on Novita: 5 s at 832x480, 480x832, 1280x720 or 720x1280; steps, LoRAs."""

    name = "novita_wan21_t2v"
    provider: ClassVar[str] = "novita"
    provider_title: ClassVar[str] = "Novita AI"
    gives_eta: ClassVar[bool] = True
    config_type: ClassVar[type[RemoteConfig]] = NovitaConfig
    config: NovitaConfig
    takes: ClassVar[frozenset[str]] = frozenset(
        {
            "prompt",
            "negative_prompt",
            "resolution",
            "width",
            "height",
            "duration",
            "steps",
            "guidance_scale",
            "flow_shift",
            "loras",
        }
    )

    def prepare(self, scene: Scene, issues: list[Issue], *, chained: bool = False) -> dict[str, Any]:
        check_scene(self, scene, issues, chained=chained)
        width, height = self._size(scene, issues)
        if scene.duration is not None and scene.duration != 5:
            issues.append(
                Issue(scene.id, "duration", scene.duration, "unset or 5: wan2.1-t2v on Novita makes 5 s clips")
            )
        if len(scene.loras) > 3:
            issues.append(Issue(scene.id, "loras", len(scene.loras), "at most 3 LoRAs"))
        return drop_none(
            {
                "prompt": text(scene, issues, "prompt", required=True, max_len=2000),
                "negative_prompt": text(scene, issues, "negative_prompt", required=False, max_len=2000),
                "width": width,
                "height": height,
                "seed": in_range(scene, issues, "seed", scene.seed, -1, SEED_MAX),
                "steps": in_range(scene, issues, "steps", 30 if scene.steps is None else scene.steps, 1, 40),
                "guidance_scale": in_range(
                    scene,
                    issues,
                    "guidance_scale",
                    5.0 if scene.guidance_scale is None else scene.guidance_scale,
                    0,
                    10,
                ),
                "flow_shift": in_range(
                    scene, issues, "flow_shift", 5.0 if scene.flow_shift is None else scene.flow_shift, 1, 10
                ),
                "loras": [{"path": lora.path, "scale": lora.scale} for lora in scene.loras] or None,
            }
        )

    @staticmethod
    def _size(scene: Scene, issues: list[Issue]) -> tuple[int, int]:
        allowed = "one of " + ", ".join(f"{w}x{h}" for w, h in SIZES)
        if scene.width is not None or scene.height is not None:
            size = (scene.width, scene.height)
            if size not in SIZES:
                issues.append(Issue(scene.id, "width/height", f"{scene.width}x{scene.height}", allowed))
                return BY_RESOLUTION["480P"]
            tier = f"{min(size)}P"  # type: ignore[type-var]
            if scene.resolution is not None and scene.resolution != tier:
                issues.append(Issue(scene.id, "resolution", scene.resolution, f"unset or {tier} to match width/height"))
            return size  # type: ignore[return-value]
        if scene.resolution is not None and scene.resolution not in BY_RESOLUTION:
            issues.append(Issue(scene.id, "resolution", scene.resolution, f"480P or 720P (or width/height: {allowed})"))
            return BY_RESOLUTION["480P"]
        return BY_RESOLUTION[scene.resolution or "480P"]

    def body(self, job: Job) -> dict[str, Any]:
        body: dict[str, Any] = {"model_name": self.model, **job.params}
        if self.config.webhook_url:
            body["extra"] = {"webhook": {"url": self.config.webhook_url}}
        return body

    def read_submit(self, data: Any) -> str:
        if not isinstance(data, dict) or not isinstance(data.get("task_id"), str) or not data["task_id"]:
            raise ProviderError(f"Novita AI answered the submit without a `task_id`: {str(data)[:200]}")
        return data["task_id"]

    def status_request(self, request_id: str) -> tuple[str, dict[str, str] | None]:
        base = self.config.base_url.rstrip("/")
        return base + "/" + str(self.config.result_path).strip("/"), {"task_id": request_id}

    def read_status(self, data: Any, request_id: str) -> Status:
        task = data.get("task") if isinstance(data, dict) else None
        raw = task.get("status") if isinstance(task, dict) else None
        if not isinstance(task, dict) or not isinstance(raw, str):
            raise ProviderError(
                f"Novita AI's result of task {request_id} has no `task.status`: {str(data)[:200]}",
                request_id=request_id,
            )
        if raw in RUNNING:
            return Status("running", raw, eta_s=eta_seconds(task.get("eta")))
        if raw == "TASK_STATUS_FAILED":
            return Status("failed", raw, reason=task.get("reason") or None)
        videos = data.get("videos")
        if (
            raw != "TASK_STATUS_SUCCEED"
            or not isinstance(videos, list)
            or not videos
            or not isinstance(videos[0], dict)
            or not isinstance(videos[0].get("video_url"), str)
        ):
            raise ProviderError(
                f"Novita AI's result of task {request_id} has a shape wanbatch does not understand "
                f"(status {raw!r}, videos {str(videos)[:120]})",
                request_id=request_id,
                status=raw,
            )
        return Status(
            "succeeded", raw, video_url=videos[0]["video_url"], url_ttl_s=seconds(videos[0].get("video_url_ttl"))
        )

    def seconds_of_video(self, params: Mapping[str, Any]) -> float:
        return 5.0


def seconds(value: Any) -> float | None:
    """A count of seconds as Novita may send it: a number, or a string of one ("604800", "3600.5"; its schema
    types `video_url_ttl` as a string). None for anything else, or a value that is not finite and > 0."""
    number = _number(value)
    return number if number is not None and number > 0 else None


def eta_seconds(value: Any) -> float | None:
    """A running task's `eta`: the seconds Novita expects it still needs, 0 when it may be done any moment (an
    eta of 0 or less, as a task about to finish, or running late, says). Not "no hint": read as none, it put
    the next poll a whole `poll.interval_s` away (10 s as shipped) from a render finishing then; at 0 the next
    poll comes after `poll.min_interval_s`. None when absent or not a number."""
    number = _number(value)
    return None if number is None else max(0.0, number)


def _number(value: Any) -> float | None:
    """A finite number, or a string of one; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


__all__ = ["NovitaWan21T2V", "eta_seconds", "seconds"]
