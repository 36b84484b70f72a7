"""What of Python's logging reaches the console under `wanbatch`: wanbatch's own warnings and anyone's errors;
library chatter (httpx requests, transformers warnings) only in the run's wanbatch.log."""

from __future__ import annotations

import logging

import pytest

from wanbatch.cli.logs import ConsoleFilter


def record(name: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "message", None, None)


@pytest.mark.parametrize(
    ("name", "level", "shown"),
    [
        ("wanbatch.runs.run", logging.WARNING, True),
        ("wanbatch", logging.ERROR, True),
        ("wanbatch.runs.progress", logging.INFO, False),  # every state: the log file's
        ("httpx", logging.INFO, False),  # `HTTP Request: POST ...`
        ("transformers.utils.import_utils", logging.WARNING, False),  # "requires torchvision"
        ("py.warnings", logging.WARNING, False),
        ("diffusers.models", logging.ERROR, True),  # a real error is never hidden
        ("wanbatchx", logging.WARNING, False),  # not ours: only a name that starts alike
    ],
)
def test_the_console_shows_ours_and_real_errors_only(name, level, shown):
    assert ConsoleFilter().filter(record(name, level)) is shown
