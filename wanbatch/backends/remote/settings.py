"""A remote backend's options checked in one place, before anything is sent.

The options, their types and defaults are the schema's (`RemoteConfig` and its provider subclasses in
wanbatch/config/backends.py); this adds what a type cannot say: ranges, choices, URLs. Every problem becomes an
Issue naming the option and its value (`backends.<name>.poll.jitter`), so a project with a bad option fails
validation as a whole instead of at its first render. Example::

    issues: list[Issue] = []
    check_settings(backend_config("novita_wan21_t2v", {"poll": {"jitter": -1}}), "backends.novita_wan21_t2v", issues)
    issues[0].field   # "backends.novita_wan21_t2v.poll.jitter"
"""

from __future__ import annotations

from dataclasses import fields

from wanbatch.config.backends import RemoteConfig
from wanbatch.config.checks import choice, number, text
from wanbatch.errors import Issue

IMAGE_ENCODINGS = ("data_uri", "base64")


def check_settings(config: RemoteConfig, where: str, issues: list[Issue]) -> None:
    """Append an Issue for each option of `config` outside what is allowed."""
    for key in ("model", "path", "api_key_env"):
        text(issues, f"{where}.{key}", getattr(config, key))
    text(issues, f"{where}.base_url", config.base_url, url=True)
    number(
        issues, f"{where}.max_in_flight", config.max_in_flight, minimum=1, integer=True, allowed="a positive integer"
    )
    number(issues, f"{where}.requests_per_second", config.requests_per_second, above=0, nullable=True)
    number(
        issues,
        f"{where}.connection_ramp",
        config.connection_ramp,
        minimum=1,
        integer=True,
        nullable=True,
        allowed="a positive integer, or null (no ramp)",
    )
    choice(issues, f"{where}.image_encoding", config.image_encoding, IMAGE_ENCODINGS)
    number(issues, f"{where}.max_download_mb", config.max_download_mb, above=0)
    for name, section in (("poll", config.poll), ("timeouts", config.timeouts), ("retries", config.retries)):
        for f in fields(section):
            value = getattr(section, f.name)
            if isinstance(value, bool):  # a switch (poll.learn): its type is the schema's to check
                continue
            if f.name == "attempts":
                number(issues, f"{where}.{name}.attempts", value, minimum=1, integer=True, allowed="a positive integer")
            else:
                number(issues, f"{where}.{name}.{f.name}", value, minimum=0)


__all__ = ["IMAGE_ENCODINGS", "check_settings"]
