"""GMI Cloud's request queue: Wan 2.1 I2V, Wan 2.1 FLF2V and wan2.7-i2v (see ../shared/API_NOTES.md).

    POST {base}{path}                  {"model": ID, "payload": {...}}  -> {"request_id", "status": "queued"}
    GET  {base}{path}/{request_id}     -> {"status": queued|processing|success|failed|cancelled,
                                           "outcome": {"video_url", "thumbnail_image_url"}}
    GET  {base}{path}?model_id=ID      -> the account's requests (answer undocumented): may settle an
                                          ambiguous submit, never proves one was not accepted

The path defaults to doc 3's `/api/v1/ie/requestqueue/apikey/requests` for all three models (docs 1 and 2
show `/api/v1/apikey/requests` on a placeholder host); both host and path are config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from wanbatch.backends.remote.ambiguous import utc
from wanbatch.backends.remote.base import NotListed, RemoteBackend, Status
from wanbatch.backends.remote.run import Run
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
from wanbatch.config.backends import GmiConfig, RemoteConfig
from wanbatch.core.media import Media
from wanbatch.errors import Issue, ProviderError

if TYPE_CHECKING:
    from wanbatch.core.job import Job
    from wanbatch.core.scene import Scene

RUNNING = {"queued", "processing"}
FAILED = {"failed", "cancelled"}


class _Gmi(RemoteBackend):
    provider: ClassVar[str] = "gmi"
    config_type: ClassVar[type[RemoteConfig]] = GmiConfig
    provider_title: ClassVar[str] = "GMI Cloud"
    can_list: ClassVar[bool] = True

    def payload(self, job: Job) -> dict[str, Any]:
        """The model's `payload`: the planned params plus the media fields."""
        raise NotImplementedError

    def resolution_of(self, params: Mapping[str, Any]) -> str | None:
        return super().resolution_of(params) or "720P"  # Wan 2.1 on GMI: fixed at 1280x720

    def body(self, job: Job) -> dict[str, Any]:
        return {"model": self.model, "payload": self.payload(job)}

    def read_submit(self, data: Any) -> str:
        if not isinstance(data, dict) or not isinstance(data.get("request_id"), str) or not data["request_id"]:
            raise ProviderError(f"GMI Cloud answered the submit without a `request_id`: {str(data)[:200]}")
        return data["request_id"]

    def status_request(self, request_id: str) -> tuple[str, dict[str, str] | None]:
        return self.api_url("/" + quote(request_id, safe="")), None

    def read_status(self, data: Any, request_id: str) -> Status:
        raw = data.get("status") if isinstance(data, dict) else None
        if raw in RUNNING:
            return Status("running", raw)
        outcome = (data.get("outcome") or {}) if isinstance(data, dict) else {}
        if raw == "success" and isinstance(outcome, dict) and isinstance(outcome.get("video_url"), str):
            return Status("succeeded", raw, video_url=outcome["video_url"])
        if raw in FAILED:
            return Status("failed", raw, reason=_reason(data))
        raise ProviderError(
            f"GMI Cloud's status of request {request_id} has a shape wanbatch does not understand "
            f"(status {raw!r}, outcome keys {sorted(outcome) if isinstance(outcome, dict) else outcome!r})",
            request_id=request_id,
            status=str(raw),
        )

    def find_submitted(
        self, run: Run, params: Mapping[str, Any], window: tuple[float, float], exclude: frozenset[str]
    ) -> str:
        """GMI documents the list's URL, not its answer: read `{"requests": [...]}` or a bare list, and match an
        item on fields GMI documents for a request (`model`, `created_at` in Unix seconds, and where the item
        echoes its `payload`, that payload's plain fields). Image data is never compared: no document says the
        list echoes it. Anything else settles nothing."""
        data = self.api.call(run, "GET", self.api_url(), what="request list", params={"model_id": self.model})
        items = data.get("requests") if isinstance(data, dict) else data
        if not isinstance(items, list):
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise NotListed(f"{self.provider_title}'s request list answered in a shape wanbatch does not read ({keys})")
        lo, hi = window
        matches = [
            str(it["request_id"])
            for it in items
            if isinstance(it, dict)
            and isinstance(it.get("request_id"), str)
            and it["request_id"] not in exclude
            and it.get("model") == self.model
            and _created_within(it.get("created_at"), lo, hi)
            and _same_plain_fields(it.get("payload"), params)
        ]
        span = f"{utc(lo)} - {utc(hi)}"
        if not matches:
            raise NotListed(
                f"{self.provider_title}'s request list ({len(items)} items) shows no request of {self.model} "
                f"with this payload created in {span}; a list may lag or leave requests out, so that proves nothing"
            )
        if len(matches) > 1:
            raise NotListed(
                f"{len(matches)} requests of {self.model} created in {span} match "
                f"({', '.join(matches[:5])}); wanbatch cannot tell which one is this scene's"
            )
        return matches[0]

    # -- shared scene mapping ------------------------------------------------------------------------
    def fixed_720p(self, scene: Scene, issues: list[Issue]) -> None:
        """Wan 2.1 on GMI renders 1280x720 only: accept the scene if it asks for that or nothing."""
        choice(scene, issues, "resolution", scene.resolution, ["720P"], " (the output is fixed at 1280x720)")
        if (scene.width, scene.height) not in ((None, None), (1280, 720)):
            issues.append(
                Issue(
                    scene.id,
                    "width/height",
                    f"{scene.width}x{scene.height}",
                    "unset or 1280x720: the output is fixed at 1280x720",
                )
            )

    def wan21_params(self, scene: Scene, issues: list[Issue]) -> dict[str, Any]:
        return {
            "prompt": text(scene, issues, "prompt", required=True),
            "video_length": whole_seconds(scene, issues, (5, 10), 5, "5 or 10"),
            "prompt_extend": False if scene.prompt_extend is None else scene.prompt_extend,
            "seed": in_range(scene, issues, "seed", scene.seed, 0, SEED_MAX),
        }

    def seconds_of_video(self, params: Mapping[str, Any]) -> float:
        return float(params.get("video_length", params.get("duration", 0)))


class GmiWan21I2V(_Gmi):
    """Wan 2.1 image-to-video, 1280x720, 5 or 10 s; the first frame travels as image data."""

    name = "gmi_wan21_i2v"
    takes: ClassVar[frozenset[str]] = frozenset(
        {"prompt", "image", "resolution", "width", "height", "duration", "prompt_extend"}
    )

    def prepare(self, scene: Scene, issues: list[Issue], *, chained: bool = False) -> dict[str, Any]:
        check_scene(self, scene, issues, chained=chained)
        check_media(self, scene, issues, "image", "path_to_image", send_as="data", required=True, chained=chained)
        self.fixed_720p(scene, issues)
        return self.wan21_params(scene, issues)

    def payload(self, job: Job) -> dict[str, Any]:
        return {**job.params, "path_to_image": self.image_data(job.inputs["image"])}


class GmiWan21Flf2v(_Gmi):
    """Wan 2.1 first-and-last-frame-to-video, 1280x720, 5 or 10 s; both frames travel as image data."""

    name = "gmi_wan21_flf2v"
    takes: ClassVar[frozenset[str]] = frozenset(
        {"prompt", "image", "last_image", "resolution", "width", "height", "duration", "prompt_extend"}
    )

    def prepare(self, scene: Scene, issues: list[Issue], *, chained: bool = False) -> dict[str, Any]:
        check_scene(self, scene, issues, chained=chained)
        check_media(self, scene, issues, "image", "first_frame_image", send_as="data", required=True, chained=chained)
        check_media(self, scene, issues, "last_image", "last_frame_image", send_as="data", required=True)
        self.fixed_720p(scene, issues)
        return self.wan21_params(scene, issues)

    def payload(self, job: Job) -> dict[str, Any]:
        return {
            **job.params,
            "first_frame_image": self.image_data(job.inputs["image"]),
            "last_frame_image": self.image_data(job.inputs["last_image"]),
        }


WAN27_MEDIA = {"image": "first_frame", "last_image": "last_frame", "audio": "driving_audio", "first_clip": "first_clip"}


class GmiWan27I2V(_Gmi):
    """wan2.7-i2v: every input optional and a URL (local files need `uploader`), 720P or 1080P, 2-15 s."""

    name = "gmi_wan27_i2v"
    takes: ClassVar[frozenset[str]] = frozenset(
        {
            "prompt",
            "negative_prompt",
            "image",
            "last_image",
            "audio",
            "first_clip",
            "resolution",
            "duration",
            "prompt_extend",
            "watermark",
        }
    )

    def prepare(self, scene: Scene, issues: list[Issue], *, chained: bool = False) -> dict[str, Any]:
        check_scene(self, scene, issues, chained=chained)
        for name, provider_field in WAN27_MEDIA.items():
            check_media(self, scene, issues, name, provider_field, send_as="url", chained=chained)
        for name in ("image", "last_image"):
            _check_frame(scene, issues, getattr(scene, name))
        _check_driving_audio(scene, issues, scene.audio)
        return drop_none(
            {
                "prompt": text(scene, issues, "prompt", required=False, max_len=1500),
                "negative_prompt": text(scene, issues, "negative_prompt", required=False, max_len=500),
                "resolution": choice(scene, issues, "resolution", scene.resolution, ["720P", "1080P"]) or "1080P",
                "duration": whole_seconds(scene, issues, range(2, 16), 5, "from 2 to 15"),
                "prompt_extend": True if scene.prompt_extend is None else scene.prompt_extend,
                "watermark": False if scene.watermark is None else scene.watermark,
                "seed": in_range(scene, issues, "seed", scene.seed, 0, SEED_MAX),
            }
        )

    def payload(self, job: Job) -> dict[str, Any]:
        media = {WAN27_MEDIA[name]: self.media_url(m) for name, m in sorted(job.inputs.items())}
        return {**job.params, **media}


def _check_frame(scene: Scene, issues: list[Issue], media: Media | None) -> None:
    """wan2.7 frames: 360-2000 px a side, at most 10 MB (checked where the file is local)."""
    if media is None or not media.is_local:
        return
    w, h = media.width or 0, media.height or 0
    if not (360 <= w <= 2000 and 360 <= h <= 2000):
        issues.append(Issue(scene.id, media.field, media.describe(), f"an image 360-2000 px a side (it is {w}x{h})"))
    if (media.size_bytes or 0) > 10 * 2**20:
        issues.append(Issue(scene.id, media.field, media.describe(), "an image of at most 10 MB"))


def _check_driving_audio(scene: Scene, issues: list[Issue], media: Media | None) -> None:
    """wan2.7 driving audio: wav or mp3, 3-30 s, at most 15 MB (duration and size checked where local)."""
    if media is None:
        return
    where = str(media.path or media.url or "").split("?")[0].lower()
    if not where.endswith((".wav", ".mp3")):
        issues.append(Issue(scene.id, "audio", media.describe(), "a .wav or .mp3 file"))
    if media.duration is not None and not 3 <= media.duration <= 30:
        issues.append(Issue(scene.id, "audio", media.describe(), f"3 to 30 s of audio (it has {media.duration:.1f} s)"))
    if (media.size_bytes or 0) > 15 * 2**20:
        issues.append(Issue(scene.id, "audio", media.describe(), "an audio file of at most 15 MB"))


def _created_within(value: Any, lo: float, hi: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= float(value) <= hi


def _same_plain_fields(echo: Any, params: Mapping[str, Any]) -> bool:
    """An item without a `payload` echo cannot be told apart by it (the time window and model decide); one
    with it must agree on every plain field it echoes."""
    if not isinstance(echo, dict):
        return True
    return all(echo[k] == v for k, v in params.items() if k in echo)


def _reason(data: Mapping[str, Any]) -> str | None:
    """The failure text, wherever GMI puts it (the docs do not show a failed request)."""
    outcome = data.get("outcome")
    for source in (outcome if isinstance(outcome, dict) else {}, data):
        for key in ("error", "error_message", "message", "reason", "detail"):
            value = source.get(key)
            if value:
                return value if isinstance(value, str) else str(value)
    return None


__all__ = ["GmiWan21Flf2v", "GmiWan21I2V", "GmiWan27I2V"]
