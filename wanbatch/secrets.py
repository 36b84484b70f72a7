"""Secrets never leave the process in clear: every value wanbatch knows to be one becomes `***` wherever
text goes out (a file of the run, the cache index, a log line, the console, an error).

What is a secret:

    the value of each key variable a backend names (`api_key_env`: $GMI_API_KEY, $AIML_API_KEY, ...)
    the value of any config entry or command-line override whose name looks like a credential
        (`*key*`, `*token*`, `*secret*`, `*password*`, `*credential*`; not `*_env`, which names a variable)

Where it is taken out: `redact` (and `redact_data` for JSON-like data) in every writer of run files and in
every error message; `RedactingFilter` on log handlers (`guard_logging` puts it on every handler);
`RedactingStream` around stdout and stderr. Example::

    register_secret(os.environ["NOVITA_API_KEY"])
    redact(f"Bearer {key} was refused")   # -> "Bearer *** was refused"
    register_overrides(["+backend.token=sk-abc123"])   # the value of a credential-named override
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

MASK = "***"
_CREDENTIAL = re.compile(r"key|token|secret|passw|credential", re.IGNORECASE)
MIN_CHARS = 4  # a shorter "secret" would blank out ordinary words

_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first: a key containing another is masked whole
_secrets_lock = threading.Lock()


def looks_like_credential(name: str) -> bool:
    """Whether a config entry called `name` holds a credential (`api_key_env` names a variable: it does not)."""
    name = str(name)
    return bool(_CREDENTIAL.search(name)) and not name.lower().endswith("_env")


def register_secret(value: str) -> None:
    """Make `redact` (and every guarded log line and stream) hide `value`."""
    global _ordered
    value = str(value).strip()
    if len(value) < MIN_CHARS:
        return
    with _secrets_lock:
        if value not in _secrets:
            _secrets.add(value)
            _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def register_key_variables(names: Iterable[str]) -> None:
    """The values of these environment variables (each backend's `api_key_env`) are secrets."""
    for name in names:
        if name and (value := os.environ.get(str(name), "")):
            register_secret(value)


def register_config(cfg: Any) -> None:
    """Every secret a composed config names: the value of each `api_key_env` variable, and every string
    under a credential-looking name, at any depth (mappings, lists and dataclasses: the typed config)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        for key, value in cfg.items():
            if str(key) == "api_key_env" and isinstance(value, str):
                register_key_variables([value])
            elif isinstance(value, str) and looks_like_credential(str(key)):
                register_secret(value)
            else:
                register_config(value)
    elif isinstance(cfg, (list, tuple)):
        for item in cfg:
            register_config(item)


def register_overrides(overrides: Iterable[str]) -> None:
    """Every secret in command-line overrides: `path.to.token=VALUE` (a credential-looking last name), the
    same inside a mapping given whole (`path={token: VALUE}`), and `...api_key_env=VAR` (VAR's value)."""
    for override in overrides:
        if "=" not in override or override.startswith("-"):
            continue
        path, value = override.lstrip("+~").split("=", 1)
        _register_named(path.strip().rsplit(".", 1)[-1], value)
        if value.lstrip().startswith(("{", "[")):
            for item in re.split(r"[,{}\[\]]", value):
                name, sep, inner = item.partition(":")
                if sep:
                    _register_named(name.strip(), inner)


def _register_named(name: str, value: str) -> None:
    value = value.strip().strip("'\"")
    if name == "api_key_env":
        register_key_variables([value])
    elif looks_like_credential(name) and not value.startswith(("{", "[")):
        register_secret(value)


def redact(text: str) -> str:
    secrets = _ordered
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def holds_secret(text: str) -> bool:
    return any(secret in text for secret in _ordered)


def redact_data(data: Any) -> Any:
    """A copy of JSON-like `data` with every string (keys included) redacted."""
    if not _ordered:
        return data
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, Mapping):
        return {redact_data(k): redact_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(redact_data(v) for v in data)
    return data


class RedactingFilter(logging.Filter):
    """Rewrites a log record that would show a registered secret (its message and its traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _ordered:
            message = record.getMessage()
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, ()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def guard_logging() -> None:
    """Put the filter on every handler there is (root's, Hydra's file and console, any logger's own): a
    filter on a logger sees only the records made there, one on a handler every record it writes."""
    loggers: list[logging.Logger | logging.PlaceHolder] = [logging.getLogger()]
    loggers += list(logging.Logger.manager.loggerDict.values())
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


class RedactingStream:
    """A text stream that redacts what is written to it (stdout and stderr during a run)."""

    def __init__(self, inner: TextIO):
        self._inner = inner

    @property
    def inner(self) -> TextIO:
        return self._inner

    def write(self, text: str) -> int:
        self._inner.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self._inner, name)


@contextlib.contextmanager
def redacted_console() -> Iterator[None]:
    """stdout and stderr redact while the block runs (every print, progress line and library message)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = redacting(sys.stdout), redacting(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def redacting(stream: TextIO) -> TextIO:
    """`stream`, redacting (once: a stream already wrapped is returned as it is)."""
    return stream if isinstance(stream, RedactingStream) else RedactingStream(stream)  # type: ignore[return-value]


# Loggers that could print a request line or a header, whoever configures the handlers (a logger's filter
# sees the records made at that logger only, not its children's).
for _name in ("wanbatch.remote", "httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy"):
    logging.getLogger(_name).addFilter(_FILTER)

__all__ = [
    "MASK",
    "RedactingFilter",
    "RedactingStream",
    "guard_logging",
    "holds_secret",
    "looks_like_credential",
    "redact",
    "redact_data",
    "redacted_console",
    "redacting",
    "register_config",
    "register_key_variables",
    "register_overrides",
    "register_secret",
]
