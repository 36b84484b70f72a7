"""A remote backend's options: parsed and checked in one place, before anything is sent.

Every problem becomes an Issue naming the option and its value (`backends.<name>.poll.jitter`), so a
project with a bad option fails validation as a whole instead of at its first render. Example::

    issues: list[Issue] = []
    settings = RemoteSettings.parse({"model": "wan2.1-t2v", "base_url": "https://api.novita.ai", ...},
                                    "backends.novita_wan21_t2v", issues)
    settings.poll.initial_s   # 10.0 unless the config says otherwise
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from wanbatch.errors import Issue


@dataclass(frozen=True)
class PollSettings:
    """The defaults suit real renders (a minute or two); a fake provider or a benchmark passes its own."""

    initial_s: float = 10.0  # first poll this long after the provider took the job
    interval_s: float = 5.0  # then this, growing by `backoff` up to `max_interval_s`
    backoff: float = 1.5
    max_interval_s: float = 60.0
    min_interval_s: float = 1.0  # floor under a provider's `eta` hint
    jitter: float = 0.2  # up to +20% on every wait, so parallel jobs do not poll in step (never earlier)
    timeout_s: float = 3600.0  # give up waiting (the id stays journalled: a rerun re-attaches)


@dataclass(frozen=True)
class TimeoutSettings:
    connect_s: float = 10.0
    read_s: float = 60.0
    write_s: float = 60.0
    pool_s: float = 60.0
    download_s: float = 300.0  # per read while downloading
    download_total_s: float = 1800.0  # a whole download, however slowly the bytes trickle in


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = 6
    initial_s: float = 1.0  # exponential backoff with jitter from here...
    max_wait_s: float = 30.0  # ...up to this
    retry_after_max_s: float = 300.0  # a Retry-After is honoured up to this long
    total_s: float = 900.0  # no call retries for longer than this
    reconcile_wait_s: float = 3.0  # wait before listing again when an ambiguous submit is not listed yet


_SECTIONS: dict[str, type] = {"poll": PollSettings, "timeouts": TimeoutSettings, "retries": RetrySettings}
_TOP = {
    "name",
    "model",
    "base_url",
    "path",
    "api_key_env",
    "max_in_flight",
    "requests_per_second",
    "image_encoding",
    "max_download_mb",
    "uploader",
    *_SECTIONS,
}
IMAGE_ENCODINGS = ("data_uri", "base64")


@dataclass(frozen=True)
class RemoteSettings:
    model: str
    base_url: str
    path: str
    api_key_env: str
    max_in_flight: int = 4
    requests_per_second: float | None = 5.0  # API calls per second per provider; null = no limit
    image_encoding: str = "data_uri"
    # A finished video larger than this is refused (by its Content-Length, else while it is read): a storage
    # host that sends without end must not fill the disk. Generous: a 1080P 10 s clip is tens of MB.
    max_download_mb: float = 2048.0
    poll: PollSettings = field(default_factory=PollSettings)
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)
    retries: RetrySettings = field(default_factory=RetrySettings)
    uploader: Any = None

    @classmethod
    def parse(
        cls, cfg: Mapping[str, Any], where: str, issues: list[Issue], extra: Iterable[str] = ()
    ) -> RemoteSettings:
        """Settings from a backend config, appending an Issue for each unknown or bad option."""
        for key in sorted(set(cfg) - _TOP - set(extra)):
            if not str(key).startswith("_"):
                issues.append(
                    Issue(None, f"{where}.{key}", cfg[key], f"unknown option; known: {', '.join(sorted(_TOP))}")
                )
        out: dict[str, Any] = {}
        for key in ("model", "base_url", "path", "api_key_env"):
            value = cfg.get(key)
            if not isinstance(value, str) or not value:
                issues.append(Issue(None, f"{where}.{key}", value, "a non-empty string"))
            out[key] = str(value or "")
        if out["base_url"] and not out["base_url"].startswith(("http://", "https://")):
            issues.append(Issue(None, f"{where}.base_url", out["base_url"], "an http(s) URL"))
        out["max_in_flight"] = _number(cfg, "max_in_flight", 4, where, issues, integer=True)
        rps = cfg.get("requests_per_second", 5.0)
        out["requests_per_second"] = None if rps is None else _number(cfg, "requests_per_second", 5.0, where, issues)
        encoding = cfg.get("image_encoding", "data_uri")
        if encoding not in IMAGE_ENCODINGS:
            issues.append(Issue(None, f"{where}.image_encoding", encoding, f"one of {', '.join(IMAGE_ENCODINGS)}"))
            encoding = "data_uri"
        out["image_encoding"] = encoding
        out["max_download_mb"] = _number(cfg, "max_download_mb", 2048.0, where, issues)
        for name, section in _SECTIONS.items():
            raw = cfg.get(name) or {}
            known = {f.name: f for f in fields(section)}
            if not isinstance(raw, Mapping):
                issues.append(Issue(None, f"{where}.{name}", raw, f"a mapping of {', '.join(known)}"))
                raw = {}
            for key in sorted(set(raw) - set(known)):
                issues.append(
                    Issue(None, f"{where}.{name}.{key}", raw[key], f"unknown option; known: {', '.join(known)}")
                )
            values = {
                k: _number(raw, k, known[k].default, f"{where}.{name}", issues, integer=k == "attempts")
                for k in raw
                if k in known
            }
            out[name] = section(**values)
        out["uploader"] = cfg.get("uploader")
        return cls(**out)


def _number(
    cfg: Mapping[str, Any], key: str, default: Any, where: str, issues: list[Issue], *, integer: bool = False
) -> Any:
    value = cfg.get(key, default)
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float)) and value >= 0
    positive = key in ("max_in_flight", "attempts", "requests_per_second", "max_download_mb")
    if positive:
        ok = ok and value > 0
    if not ok:
        allowed = "a positive integer" if integer else "a number > 0" if positive else "a number >= 0"
        issues.append(Issue(None, f"{where}.{key}", value, allowed))
        return default
    return value


__all__ = ["IMAGE_ENCODINGS", "PollSettings", "RemoteSettings", "RetrySettings", "TimeoutSettings"]
