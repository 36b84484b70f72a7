"""Plan time for remote models: a scene's fields checked against what one provider's model takes.

A provider module's `prepare` is built from these: `check_scene` (no field the model ignores may be set),
`check_media` (each input can travel the way the provider takes it), and the field helpers, each of which
returns the value and appends an Issue naming the scene, the field, the value and what is allowed::

    params = {"prompt": text(scene, issues, "prompt", required=True, max_len=2000),
              "seed": in_range(scene, issues, "seed", scene.seed, 0, SEED_MAX)}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from wanbatch.config import checks
from wanbatch.core.media import Media
from wanbatch.errors import Issue

if TYPE_CHECKING:
    from wanbatch.backends.remote.base import RemoteBackend
    from wanbatch.core.scene import Scene

SEED_MAX = 2**31 - 1

# Every scene field a model could map; one it does not take must be unset (never silently dropped).
RENDER_FIELDS = (
    "prompt",
    "negative_prompt",
    "image",
    "last_image",
    "audio",
    "first_clip",
    "resolution",
    "width",
    "height",
    "duration",
    "num_frames",
    "fps",
    "steps",
    "guidance_scale",
    "flow_shift",
    "loras",
    "prompt_extend",
    "watermark",
)
_HINTS = {
    "num_frames": "; give `duration` in seconds",
    "fps": "; the provider fixes the frame rate",
    "width": "; use `resolution`",
    "height": "; use `resolution`",
}


def check_scene(backend: RemoteBackend, scene: Scene, issues: list[Issue], *, chained: bool) -> None:
    """An Issue for each field this model cannot honour that the scene sets."""
    for name in RENDER_FIELDS:
        value = getattr(scene, name)
        if name in backend.takes or value is None or value == ():
            continue
        if value is False and name in ("prompt_extend", "watermark"):
            continue  # a model without the option does not extend prompts nor add watermarks
        issues.append(
            Issue(
                scene.id,
                name,
                _show(value),
                f"unset: {backend.model} on {backend.provider_title} does not take `{name}`{_HINTS.get(name, '')}",
            )
        )
    if scene.model is not None and scene.model != backend.model:
        issues.append(
            Issue(
                scene.id,
                "model",
                scene.model,
                f"unset or `{backend.model}`: backend `{backend.name}` renders that model only; pick another backend",
            )
        )
    if chained and "image" not in backend.takes:
        issues.append(Issue(scene.id, "chain_from", scene.chain_from, f"unset: {backend.model} takes no first frame"))


def check_media(
    backend: RemoteBackend,
    scene: Scene,
    issues: list[Issue],
    name: str,
    provider_field: str,
    *,
    send_as: str,
    required: bool = False,
    chained: bool = False,
) -> None:
    """Check that a media field can be sent the way the provider takes it.
    `send_as`: "data" (file bytes in the body), "url" (an address the provider fetches) or "either"."""
    media: Media | None = getattr(scene, name)
    title = backend.provider_title
    if name == "image" and chained:
        if send_as == "url" and backend.uploader is None:
            issues.append(
                Issue(
                    scene.id,
                    "chain_from",
                    scene.chain_from,
                    f"a backend with an uploader: "
                    f"{title} fetches `{provider_field}` from a URL, and the chained "
                    f"first frame is a local file; set backends.{backend.name}.uploader",
                )
            )
        return
    if media is None:
        if required:
            need = " (or `chain_from`)" if name == "image" else ""
            issues.append(Issue(scene.id, name, None, f"an input{need}: {backend.model} requires `{provider_field}`"))
        return
    if send_as == "data" and not media.is_local:
        issues.append(
            Issue(
                scene.id,
                name,
                media.describe(),
                f"a local file: {title} takes `{provider_field}` as file data, not a URL",
            )
        )
    if send_as == "url" and media.is_local and backend.uploader is None:
        issues.append(
            Issue(
                scene.id,
                name,
                media.describe(),
                f"an http(s) URL: {title} fetches "
                f"`{provider_field}` from a URL; give one, or set backends.{backend.name}.uploader "
                "to upload local files",
            )
        )


def _show(value: Any) -> Any:
    """A field's value as an Issue shows it (media by what they are, dataclasses as mappings)."""
    if isinstance(value, Media):
        return value.describe()
    if isinstance(value, tuple):
        return [_show(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return value


def whole_seconds(scene: Scene, issues: list[Issue], allowed: Iterable[int], default: int, allowed_text: str) -> int:
    """`duration` as the whole seconds a provider takes (the default when unset)."""
    if scene.duration is None:
        return default
    choices = set(allowed)
    if float(scene.duration).is_integer() and int(scene.duration) in choices:
        return int(scene.duration)
    issues.append(Issue(scene.id, "duration", scene.duration, f"whole seconds, {allowed_text}"))
    return default


def in_range(scene: Scene, issues: list[Issue], name: str, value: Any, lo: float, hi: float) -> Any:
    checks.number(
        issues, name, value, minimum=lo, maximum=hi, nullable=True, allowed=f"from {lo:g} to {hi:g}", scene=scene.id
    )
    return value


def text(scene: Scene, issues: list[Issue], name: str, *, required: bool, max_len: int | None = None) -> str | None:
    """A text field, required or not, within the provider's length limit (None: the doc gives none)."""
    value: str | None = getattr(scene, name)
    if required and not (value or "").strip():
        issues.append(Issue(scene.id, name, value, "a non-empty text: this model requires it"))
    elif value is not None and max_len is not None and len(value) > max_len:
        issues.append(Issue(scene.id, name, value[:40] + "...", f"at most {max_len} characters (it has {len(value)})"))
    return value


def choice(scene: Scene, issues: list[Issue], name: str, value: Any, allowed: Iterable[Any], why: str = "") -> Any:
    options = list(allowed)
    words = f"one of {', '.join(map(str, options))}{why}"
    checks.choice(issues, name, value, options, nullable=True, allowed=words, scene=scene.id)
    return value


def drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


__all__ = [
    "RENDER_FIELDS",
    "SEED_MAX",
    "check_media",
    "check_scene",
    "choice",
    "drop_none",
    "in_range",
    "text",
    "whole_seconds",
]
