"""The exceptions wanbatch raises.

    WanbatchError
     ├── ConfigError        the project is invalid: nothing ran, nothing was sent or cached (exit 2)
     │    ├── ProjectFileError    the project file is not a project (YAML syntax, no `defaults` line)
     │    └── MissingExtraError   an optional dependency is not installed (names the extra)
     ├── RenderError        a scene failed at run time; other scenes carry on (exit 1)
     │    ├── ProviderError       a remote API answered with a failure (carries its reason)
     │    └── DownloadError       a rendered video could not be fetched or is not a whole video
     └── ReadOnlyCacheError  something tried to write a cache this process may only read (a run checks first)

User errors say what to change; runtime errors say what happened and what was kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wanbatch.secrets import redact


@dataclass(frozen=True)
class Issue:
    """One problem in a project, named precisely enough to fix without reading code."""

    scene: str | None
    field: str
    value: Any
    allowed: str
    where: str | None = None  # where the scene was written, when not in the project file: `scenes.csv line 12`

    def __str__(self) -> str:
        who = f"scene `{self.scene}`" if self.scene is not None else "project"
        if self.where:
            who = f"{who} ({self.where})"
        # An override such as `+backend.token=sk-...` is an unknown option, shown here: never its value.
        return redact(f"{who}: `{self.field}` = {self.value!r} is not allowed; {self.allowed}")


class WanbatchError(Exception):
    """Base of every error wanbatch raises on purpose."""


class ConfigError(WanbatchError):
    """The project (or an option) is invalid. Carries every issue found, not just the first. One issue reads as
    one line; several as a head line and one line each."""

    def __init__(self, issues: list[Issue] | str):
        if isinstance(issues, str):
            issues = [Issue(None, "config", None, issues)]
        self.issues = list(issues)
        lines = [str(i) for i in self.issues]
        if len(lines) == 1:
            super().__init__(lines[0])
            return
        head = f"the project is invalid ({len(lines)} problems):"
        super().__init__("\n".join([head, *("  - " + line for line in lines)]))


class ProjectFileError(ConfigError):
    """The project file cannot be read as a project: told as `file:line:column: message`, as compilers do."""

    def __init__(self, path: str, message: str, line: int | None = None, column: int | None = None):
        self.path, self.line, self.column = path, line, column
        super().__init__([Issue(None, "project file", path, message)])
        where = path if line is None else f"{path}:{line}:{column}"
        self.args = (f"{where}: {message}",)

    def __str__(self) -> str:
        return str(self.args[0])


class MissingExtraError(ConfigError):
    """An optional dependency is missing; the message names the pip extra that provides it."""

    def __init__(self, what: str, extra: str):
        self.extra = extra
        super().__init__([Issue(None, what, None, f"it needs the `{extra}` extra: pip install 'wanbatch[{extra}]'")])


class RenderError(WanbatchError):
    """A render failed at run time. The run goes on with the other scenes."""


class ProviderError(RenderError):
    """A remote provider reported a failed or cancelled render."""

    def __init__(self, message: str, *, request_id: str | None = None, status: str | None = None):
        self.request_id = request_id
        self.status = status
        super().__init__(message)


class DownloadError(RenderError):
    """A finished render could not be downloaded whole; nothing was cached."""


class Cancelled(RenderError):
    """The run was interrupted (Ctrl-C) before this scene finished."""


class ReadOnlyCacheError(WanbatchError):
    """A write to a cache this process may only read (a shared or mounted one). A run never gets here: one
    that would have to store a render stops before it starts (exit 2)."""
