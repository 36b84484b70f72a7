"""What of Python's logging reaches the console. conf/wanbatch.yaml's `hydra.job_logging` sends every record to the
run's log file (`wanbatch.log`) and, through this filter, only some to the console (stderr):

- wanbatch's own warnings and errors (`wanbatch.*`, WARNING and up): a user acts on them;
- any library's errors (ERROR and up): a real error is never hidden;
- not library chatter: httpx's `HTTP Request: POST ...` lines, transformers' and diffusers' warnings, Python
  warnings (routed into logging by `capture_warnings`); they are in the log file.
"""

from __future__ import annotations

import logging


class ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        return record.levelno >= logging.WARNING and (record.name == "wanbatch" or record.name.startswith("wanbatch."))


def capture_warnings() -> None:
    """Python warnings (a library's DeprecationWarning, a UserWarning from torch) go through logging, so they land
    in the log file instead of on the console."""
    logging.captureWarnings(True)


__all__ = ["ConsoleFilter", "capture_warnings"]
