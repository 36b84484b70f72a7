"""A scene as the user declares it: every field of DESIGN.md, typed, with generic range checks.

Backend-specific limits (which durations a provider takes, which sizes a model supports) are checked by
the backend; this module checks what is true for every backend. Parsing never stops at the first problem:
it returns every issue, so a user fixes a project in one round.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from wanbatch.config.checks import did_you_mean
from wanbatch.core.media import Media
from wanbatch.core.names import ID_RULE
from wanbatch.errors import Issue

RESOLUTIONS = ("480P", "720P", "1080P")
TRANSITIONS = ("cut", "crossfade", "fade")
MEDIA_FIELDS = ("image", "last_image", "audio", "first_clip")


@dataclass(frozen=True)
class Transition:
    """How this scene is joined to the previous one in the film."""

    type: str = "cut"
    duration: float = 0.0


@dataclass(frozen=True)
class Lora:
    path: str
    scale: float = 1.0


@dataclass
class Scene:
    """One shot of the film. `None` means "not set": project defaults, then backend defaults apply."""

    id: str
    index: int = 0
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int = -1
    backend: str | None = None
    model: str | None = None
    image: Media | None = None
    last_image: Media | None = None
    audio: Media | None = None
    first_clip: Media | None = None
    resolution: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    num_frames: int | None = None
    fps: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    flow_shift: float | None = None
    loras: tuple[Lora, ...] = ()
    prompt_extend: bool | None = None
    watermark: bool | None = None
    chain_from: str | None = None
    transition: Transition = field(default_factory=Transition)
    title: str | None = None
    # Takes: `takes` variations of the scene, with seeds seed, seed+1, ... (or the listed `seeds`); `pick`
    # (1 is the first) is the take that goes into the film.
    takes: int = 1
    pick: int = 1
    seeds: tuple[int, ...] = ()
    # The fields the scene sets itself (not from project defaults): an override that changes one of them
    # is written `scenes.N.field=v`; one that adds it, `+scenes.N.field=v`.
    declared: tuple[str, ...] = ()

    def media(self) -> dict[str, Media]:
        return {name: m for name in MEDIA_FIELDS if (m := getattr(self, name)) is not None}


# name -> (python type(s), short description of what is allowed)
_SCALARS: dict[str, tuple[tuple[type, ...], str]] = {
    "id": ((str,), ID_RULE),
    "prompt": ((str,), "a string"),
    "negative_prompt": ((str,), "a string"),
    "seed": ((int,), "an integer >= 0, or -1 for a random seed resolved once at plan time"),
    "backend": ((str,), "a backend name"),
    "model": ((str,), "a model name or local folder"),
    "resolution": ((str,), f"one of {', '.join(RESOLUTIONS)}"),
    "width": ((int,), "a positive integer (pixels)"),
    "height": ((int,), "a positive integer (pixels)"),
    "duration": ((int, float), "a positive number of seconds"),
    "num_frames": ((int,), "a positive integer"),
    "fps": ((int,), "a positive integer"),
    "steps": ((int,), "a positive integer"),
    "guidance_scale": ((int, float), "a number >= 0"),
    "flow_shift": ((int, float), "a number > 0"),
    "prompt_extend": ((bool,), "true or false"),
    "watermark": ((bool,), "true or false"),
    "chain_from": ((str,), "the id of another scene"),
    "title": ((str,), "a string"),
    "takes": ((int,), "an integer >= 1: how many takes to render (seeds seed, seed+1, ...)"),
    "pick": ((int,), "an integer >= 1: the take that goes into the film (1 is the first)"),
}
SCENE_FIELDS = frozenset([*_SCALARS, *MEDIA_FIELDS, "loras", "transition", "seeds"])


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int in Python; a `seed: true` is a mistake, not seed 1.
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def parse_fields(raw: dict[str, Any], scene_id: str | None, issues: list[Issue], prefix: str = "") -> dict[str, Any]:
    """Type- and range-check scene fields (media are left as strings). Returns the good ones."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if key not in SCENE_FIELDS:
            hint = did_you_mean(str(key), sorted(SCENE_FIELDS))
            known = ", ".join(sorted(SCENE_FIELDS))
            issues.append(Issue(scene_id, name, value, f"unknown field{hint}; known: {known}"))
            continue
        if value is None:
            continue
        if key == "resolution" and isinstance(value, str):
            value = value.upper()  # `480p` is how people write it; the key hashes the one spelling
        if key in MEDIA_FIELDS:
            if not isinstance(value, str) or not value:
                issues.append(
                    Issue(scene_id, name, value, "a local path (relative to the project file) or an http(s) URL")
                )
            else:
                out[key] = value
        elif key == "loras":
            loras = _parse_loras(value, scene_id, name, issues)
            if loras is not None:
                out[key] = loras
        elif key == "transition":
            tr = _parse_transition(value, scene_id, name, issues)
            if tr is not None:
                out[key] = tr
        elif key == "seeds":
            seeds = _parse_seeds(value, scene_id, name, issues)
            if seeds is not None:
                out[key] = seeds
        else:
            types, allowed = _SCALARS[key]
            if not _type_ok(value, types) or not _in_range(key, value):
                issues.append(Issue(scene_id, name, value, allowed))
            else:
                out[key] = float(value) if float in types and not isinstance(value, bool) else value
    return out


def _in_range(key: str, value: Any) -> bool:
    if key == "id":
        return bool(value.strip())
    if key == "seed":
        return value >= -1
    if key == "resolution":
        return value in RESOLUTIONS
    if key in ("width", "height", "num_frames", "fps", "steps", "takes", "pick"):
        return value > 0
    if key == "duration":
        return value > 0
    if key == "guidance_scale":
        return value >= 0
    if key == "flow_shift":
        return value > 0
    return True


def _parse_loras(value: Any, scene_id: str | None, name: str, issues: list[Issue]) -> tuple[Lora, ...] | None:
    allowed = "a list of {path: str, scale: number}"
    if not isinstance(value, (list, tuple)):
        issues.append(Issue(scene_id, name, value, allowed))
        return None
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or set(item) - {"path", "scale"}:
            issues.append(Issue(scene_id, f"{name}.{i}", item, allowed))
            continue
        scale = item.get("scale", 1.0)
        if not _type_ok(scale, (int, float)):
            issues.append(Issue(scene_id, f"{name}.{i}.scale", scale, "a number"))
            continue
        out.append(Lora(item["path"], float(scale)))
    return tuple(out)


def _parse_seeds(value: Any, scene_id: str | None, name: str, issues: list[Issue]) -> tuple[int, ...] | None:
    """`seeds`: the seeds of the takes, one per take, written down (e.g. the ones worth keeping)."""
    allowed = "a non-empty list of distinct integers >= 0, one seed per take"
    ok = (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(_type_ok(v, (int,)) and v >= 0 for v in value)
        and len(set(value)) == len(value)
    )
    if not ok:
        issues.append(Issue(scene_id, name, list(value) if isinstance(value, tuple) else value, allowed))
        return None
    return tuple(value)


def _parse_transition(value: Any, scene_id: str | None, name: str, issues: list[Issue]) -> Transition | None:
    allowed = f"one of {', '.join(TRANSITIONS)}, or {{type: ..., duration: seconds}}"
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or set(value) - {"type", "duration"}:
        issues.append(Issue(scene_id, name, value, allowed))
        return None
    kind = value.get("type", "cut")
    if kind not in TRANSITIONS:
        issues.append(Issue(scene_id, f"{name}.type", kind, allowed))
        return None
    default = 0.0 if kind == "cut" else 0.5
    duration = value.get("duration", default)
    if not _type_ok(duration, (int, float)) or duration < 0 or (kind != "cut" and duration == 0):
        issues.append(Issue(scene_id, f"{name}.duration", duration, "a number of seconds > 0 (0 only for a cut)"))
        return None
    return Transition(kind, float(duration) if kind != "cut" else 0.0)


def replace(scene: Scene, **changes: Any) -> Scene:
    return dataclasses.replace(scene, **changes)
