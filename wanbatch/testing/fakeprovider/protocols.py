"""The five models as their documents describe them: payload rules, clip shapes and answer shapes.

Validation is strict where the documents are (types, ranges, enums, required fields) and rejects fields
the documents do not list, so a backend that sends something unexpected fails loudly in tests.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import Any

from wanbatch.testing.fakeprovider.state import FakeJob

Check = Callable[[Any], str | None]

GMI_PATHS = ("/api/v1/ie/requestqueue/apikey/requests", "/api/v1/apikey/requests")
AIML_PATH = "/v2/video/generations"
NOVITA_SUBMIT = "/v3/async/wan-t2v"
NOVITA_RESULT = "/v3/async/task-result"

GMI_I2V21, GMI_FLF2V, GMI_WAN27 = "Wan-AI_Wan2.1-I2V-14B-720P", "Wan-AI_Wan2.1-FLF2V-14B-720P", "wan2.7-i2v"
AIML_MODEL, NOVITA_MODEL = "alibaba/wan-2-7-i2v", "wan2.1-t2v"
SEED_MAX = 2**31 - 1
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")


# -- checks -----------------------------------------------------------------------------------------
def _int(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"an integer from {lo} to {hi}"

    return check


def _num(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"a number from {lo:g} to {hi:g}"

    return check


def _text(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        return None if isinstance(v, str) and lo <= len(v) <= hi else f"a string of {lo} to {hi} characters"

    return check


def _one_of(*values: Any) -> Check:
    def check(v: Any) -> str | None:
        return None if v in values and not isinstance(v, bool) else f"one of {', '.join(map(str, values))}"

    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _url(v: Any) -> str | None:
    return None if isinstance(v, str) and v.startswith(("http://", "https://")) else "an http(s) URL"


def _image_data(v: Any) -> str | None:
    """Base64 image data, bare or as a data URI."""
    if not isinstance(v, str):
        return "base64 image data"
    if v.startswith("data:"):
        head, _, v = v.partition(",")
        if not (head.startswith("data:image/") and head.endswith(";base64")):
            return "a data:image/...;base64 URI"
    try:
        raw = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        return "base64 image data (it does not decode)"
    return None if raw.startswith(IMAGE_MAGIC) else "base64 image data (not a PNG, JPEG or WebP image)"


def _image_or_url(v: Any) -> str | None:
    return None if _url(v) is None else _image_data(v)


def _loras(v: Any) -> str | None:
    ok = (
        isinstance(v, list)
        and len(v) <= 3
        and all(
            isinstance(x, dict)
            and set(x) <= {"path", "scale"}
            and isinstance(x.get("path"), str)
            and _num(0, 100)(x.get("scale", 1.0)) is None
            for x in v
        )
    )
    return None if ok else "a list of at most 3 {path, scale}"


def _extra(v: Any) -> str | None:
    ok = (
        isinstance(v, dict)
        and set(v) <= {"webhook"}
        and ("webhook" not in v or (isinstance(v["webhook"], dict) and _url(v["webhook"].get("url")) is None))
    )
    return None if ok else "{webhook: {url}}"


def _validate(payload: Any, spec: dict[str, Check], required: tuple[str, ...], where: str = "") -> list[str]:
    if not isinstance(payload, dict):
        return [f"{where or 'body'} must be a JSON object"]
    errors = [f"`{where}{k}` is required" for k in required if k not in payload]
    for key, value in payload.items():
        check = spec.get(key)
        if check is None:
            errors.append(f"`{where}{key}` is not a known field; known: {', '.join(spec)}")
        elif (why := check(value)) is not None:
            errors.append(f"`{where}{key}` must be {why}")
    return errors


GMI_SPECS: dict[str, tuple[dict[str, Check], tuple[str, ...]]] = {
    GMI_I2V21: (
        {
            "prompt": _text(1, 100_000),
            "path_to_image": _image_or_url,
            "video_length": _one_of(5, 10),
            "prompt_extend": _bool,
            "seed": _int(-1, SEED_MAX),
        },
        ("prompt", "path_to_image"),
    ),
    GMI_FLF2V: (
        {
            "prompt": _text(1, 100_000),
            "first_frame_image": _image_data,
            "last_frame_image": _image_data,
            "video_length": _one_of(5, 10),
            "prompt_extend": _bool,
            "seed": _int(-1, SEED_MAX),
        },
        ("prompt", "first_frame_image", "last_frame_image"),
    ),
    GMI_WAN27: (
        {
            "prompt": _text(0, 1500),
            "negative_prompt": _text(0, 500),
            "first_frame": _url,
            "last_frame": _url,
            "driving_audio": _url,
            "first_clip": _url,
            "resolution": _one_of("720P", "1080P"),
            "duration": _int(2, 15),
            "prompt_extend": _bool,
            "watermark": _bool,
            "seed": _int(0, SEED_MAX),
        },
        (),
    ),
}
AIML_SPEC: dict[str, Check] = {
    "model": _one_of(AIML_MODEL),
    "prompt": _text(1, 100_000),
    "image_url": _image_or_url,
    "audio_url": _url,
    "resolution": _one_of("720p", "1080p"),
    "duration": _int(2, 15),
    "enable_prompt_expansion": _bool,
    "enhance_prompt": _bool,
    "negative_prompt": _text(0, 500),
    "seed": _int(-1, 2**32),
    "watermark": _bool,
}
NOVITA_SPEC: dict[str, Check] = {
    "model_name": _one_of(NOVITA_MODEL),
    "prompt": _text(1, 2000),
    "negative_prompt": _text(0, 2000),
    "width": _one_of(480, 720, 832, 1280),
    "height": _one_of(480, 720, 832, 1280),
    "seed": _int(-1, 9_999_999_999),
    "steps": _int(1, 40),
    "guidance_scale": _num(0, 10),
    "flow_shift": _num(1, 10),
    "loras": _loras,
    "extra": _extra,
}
NOVITA_SIZES = {(832, 480), (480, 832), (1280, 720), (720, 1280)}


def validate(provider: str, body: Any) -> tuple[str, dict[str, Any], list[str]]:
    """(model, payload, errors) of a submit body."""
    if not isinstance(body, dict):
        return "?", {}, ["the body must be a JSON object"]
    if provider == "gmi":
        model = body.get("model")
        if set(body) - {"model", "payload"}:
            return str(model), {}, [f"unknown top-level fields: {sorted(set(body) - {'model', 'payload'})}"]
        if model not in GMI_SPECS:
            return str(model), {}, [f"`model` must be one of {', '.join(GMI_SPECS)}"]
        spec, required = GMI_SPECS[model]
        payload = body.get("payload")
        return (model, payload if isinstance(payload, dict) else {}, _validate(payload, spec, required, "payload."))
    if provider == "aiml":
        return str(body.get("model")), body, _validate(body, AIML_SPEC, ("model", "prompt", "image_url"))
    errors = _validate(body, NOVITA_SPEC, ("model_name", "prompt"))
    if ("width" in body) != ("height" in body):
        errors.append("`width` and `height` go together")
    elif "width" in body and (body["width"], body["height"]) not in NOVITA_SIZES:
        errors.append(f"`width`x`height` must be one of {sorted(NOVITA_SIZES)}")
    return str(body.get("model_name")), body, errors


def clip_shape(provider: str, model: str, payload: dict[str, Any]) -> tuple[int, int, int]:
    """(width, height, seconds) the model would render for this payload."""
    if model in (GMI_I2V21, GMI_FLF2V):
        return 1280, 720, int(payload.get("video_length", 5))
    if model == GMI_WAN27:
        w, h = (1280, 720) if payload.get("resolution") == "720P" else (1920, 1080)
        return w, h, int(payload.get("duration", 5))
    if provider == "aiml":
        w, h = (1280, 720) if payload.get("resolution") == "720p" else (1920, 1080)
        return w, h, int(payload.get("duration", 10))
    return int(payload.get("width", 832)), int(payload.get("height", 480)), 5


# -- answers ----------------------------------------------------------------------------------------
def submit_answer(job: FakeJob) -> dict[str, Any]:
    if job.provider == "gmi":
        t = int(job.created)
        return {
            "request_id": job.id,
            "model": job.model,
            "status": "queued",
            "created_at": t,
            "updated_at": t,
            "queued_at": t,
        }
    if job.provider == "aiml":
        return {"id": job.id, "status": "queued"}
    return {"task_id": job.id}


def status_answer(job: FakeJob, video_url: str, *, with_payload: bool = True) -> dict[str, Any]:
    now = time.time()
    status = job.status(now)
    t = int(job.created)
    if job.provider == "gmi":
        outcome: dict[str, Any] = {}
        if status == "success":
            outcome = {"video_url": video_url, "thumbnail_image_url": video_url.replace("/videos/", "/thumbs/")}
        elif status in ("failed", "cancelled"):
            outcome = {"error": job.reason}
        answer = {
            "request_id": job.id,
            "org_id": "fake-org",
            "model": job.model,
            "status": status,
            "is_public": False,
            "outcome": outcome,
            "qworker_id": "fake-worker",
            "created_at": t,
            "updated_at": int(min(now, job.done_at)),
            "queued_at": t,
        }
        if with_payload:
            answer["payload"] = job.payload
        return answer
    if job.provider == "aiml":
        word = {"queued": "queued", "processing": "generating", "success": "completed"}.get(status, "failed")
        return {
            "id": job.id,
            "status": word,
            "video": {"url": video_url} if status == "success" else None,
            "error": {"name": "GenerationError", "message": job.reason} if word == "failed" else None,
        }
    word = {
        "queued": "TASK_STATUS_QUEUED",
        "processing": "TASK_STATUS_PROCESSING",
        "success": "TASK_STATUS_SUCCEED",
    }.get(status, "TASK_STATUS_FAILED")
    left = job.eta(now)
    return {
        "extra": {"seed": str(job.seed)},
        "task": {
            "task_id": job.id,
            "task_type": "WAN_T2V",
            "status": word,
            "reason": job.reason if word == "TASK_STATUS_FAILED" else "",
            "eta": round(left, 2),  # seconds
            "progress_percent": 100
            if status == "success"
            else max(0, min(99, int(100 * (1 - left / max(job.latency, 1e-9))))),
        },
        "images": [],
        "videos": [{"video_url": video_url, "video_url_ttl": str(int(job.url_ttl)), "video_type": "mp4"}]
        if status == "success"
        else [],
    }


def list_answer(items: list[dict[str, Any]], shape: str) -> Any:
    """GMI's request list in one of the shapes a test asks for (the real answer is undocumented)."""
    if shape == "list":
        return items
    if shape == "data":
        return {"data": items, "total": len(items)}
    if shape == "empty":
        return {"requests": [], "total": 0}
    if shape == "no_model":
        items = [{k: v for k, v in it.items() if k != "model"} for it in items]
    elif shape == "no_payload":
        items = [{k: v for k, v in it.items() if k != "payload"} for it in items]
    return {"requests": items, "total": len(items)}


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message}}
