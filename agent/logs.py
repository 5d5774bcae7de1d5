"""Logging for a journald-friendly daemon: one line per event, level first, never a secret."""

from __future__ import annotations

import logging
import sys

from agent.config import redact


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then hides URL passwords wherever they slipped into the text."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record)).replace("\n", " | ")


def _without_traceback(record: logging.LogRecord) -> bool:
    record.exc_info = record.exc_text = record.stack_info = None
    return True


def setup(level: str = "info", *, stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("libav").setLevel(logging.ERROR)
    # alibabacloud_credentials refreshes through APScheduler, which logs every start and stop.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # alibabacloud_credentials logs its own failures with tracebacks of its internals (an ECS
    # metadata 404 on every refresh); the message says it all, and ours says what was tried.
    logging.getLogger("credentials").addFilter(_without_traceback)
    # httpx logs every request at INFO ("HTTP Request: POST https://ice...."); the uploader
    # logs what each one meant.
    logging.getLogger("httpx").setLevel(logging.WARNING)
