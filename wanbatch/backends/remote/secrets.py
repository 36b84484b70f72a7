"""API keys never leave the Authorization header: every key this process has seen is hidden from messages
and log lines.

A key is registered when a backend reads it from the environment; from then on `redact` replaces it with
`***`, and a filter on httpx's loggers and ours rewrites any record that would show it. Example::

    register_secret(os.environ["NOVITA_API_KEY"])
    redact(f"Bearer {key} was refused")   # -> "Bearer *** was refused"
"""

from __future__ import annotations

import logging
import threading

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Make `redact` (and every log line of httpx and the remote backends) hide `value`."""
    if len(value) >= 4:  # a shorter "key" would blank out ordinary words
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # longest first: a key containing another
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a log record that would show a registered key. Attached to httpx's loggers and ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = record.getMessage()
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, ()
            if record.exc_info and not record.exc_text:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


# Every logger that could print a request line or a header, ours included.
_FILTER = RedactingFilter()
for _name in ("wanbatch.remote", "httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy"):
    logging.getLogger(_name).addFilter(_FILTER)

__all__ = ["RedactingFilter", "redact", "register_secret"]
