"""A submit that may have been accepted: what the user is told, and what the manifest and the journal keep.

When a submit's answer is lost after its body was sent (a timeout, a dropped or reset connection, a 5xx),
the provider may have taken the job. Sending it again could pay twice, so wanbatch never does so on its own:
the scene fails as ambiguous, with when it was sent and what was sent, and it is submitted again only when
the user says so (`resubmit_ambiguous=[scene ids]`), on this run or any later one. Example::

    raise AmbiguousSubmit.for_scene("s", "GMI Cloud", "wan2.7-i2v", sent_at, summarize(body), why="...")
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from wanbatch.errors import RenderError

TEXT_FIELDS = ("prompt", "negative_prompt")
_LONG = 200  # a string longer than this (and not a prompt) is data: image bytes, base64


class AmbiguousSubmit(RenderError):
    """A submit may have been accepted but its id never came back, and no request list could settle it.
    `details` (when it was sent, a summary of what) goes to the manifest."""

    def __init__(self, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.details = dict(details or {})

    def __reduce__(self) -> Any:  # keep `details` across processes (Ray workers)
        return (type(self), (str(self), self.details))

    @classmethod
    def for_scene(
        cls,
        scene: str,
        provider_title: str,
        model: str,
        sent_at: float,
        payload: Mapping[str, Any],
        *,
        why: str,
        earlier: bool = False,
    ) -> AmbiguousSubmit:
        stamp = utc(sent_at)
        what = "An earlier submit" if earlier else "The submit"
        message = (
            f"scene `{scene}`: {what} to {provider_title} at {stamp} may have been accepted: {why}. "
            f"Nothing was sent again, so nothing is paid twice. Check your {provider_title} requests for model "
            f"{model} made around {stamp} (sent: {one_line(payload)}); if it is not there, submit it again with "
            f"`resubmit_ambiguous=[{scene}]`."
        )
        return cls(message, {"submitted_at_utc": stamp, "model": model, "payload": dict(payload), "why": why})


def utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def summarize(body: Mapping[str, Any]) -> dict[str, Any]:
    """A request body as a person checks it against a provider's console: every field, prompts cut at 80
    characters, image data as its size and hash (never the bytes), nested payloads flattened one level."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, Mapping):
            out.update({k: v for k, v in summarize(value).items() if k not in out})
        elif isinstance(value, str) and key in TEXT_FIELDS:
            out[key] = value if len(value) <= 80 else value[:77] + "..."
        elif isinstance(value, str) and len(value) > _LONG:
            digest = hashlib.sha256(value.encode()).hexdigest()[:12]
            out[key] = f"<{len(value)} characters of data, sha256 {digest}>"
        else:
            out[key] = value
    return out


def one_line(summary: Mapping[str, Any]) -> str:
    return json.dumps(summary, ensure_ascii=False, sort_keys=True, default=str)


__all__ = ["AmbiguousSubmit", "one_line", "summarize", "utc"]
