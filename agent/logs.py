"""Logging for a journald-friendly daemon: one line per event, level first, never a secret.

Under journald (systemd sets ``JOURNAL_STREAM`` to the device and inode of the stream it
gave us) a line is ``LEVEL module: message`` and the journal adds its own timestamp. Anywhere
else (a terminal, a container, a file) every line starts with an ISO-8601 UTC timestamp to
the millisecond, ``2026-12-06T22:41:00.123Z``, so timing questions can be answered.

``ipc-agent run --log-format json`` (or ``IPC_AGENT_LOG_FORMAT=json``, which is how the
choice reaches the camera and uploader processes) prints one JSON object per line instead:
``{"time", "level", "logger", "message"}``, for log shippers.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from agent.config import redact
from agent.timestamps import utc_iso


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then hides URL passwords wherever they slipped into the text."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record)).replace("\n", " | ")


class UtcFormatter(RedactingFormatter):
    """RedactingFormatter with ``%(asctime)s`` as ISO-8601 UTC to the millisecond."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return utc_iso(record.created)


LOG_FORMAT_ENV = "IPC_AGENT_LOG_FORMAT"
LOG_FORMATS = ("text", "json")


class JsonFormatter(UtcFormatter):
    """One JSON object per line: time (ISO-8601 UTC), level, logger, message (redacted)."""

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            message += f" | {type(record.exc_info[1]).__name__}: {redact(str(record.exc_info[1]))}"
        return json.dumps(
            {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": message,
            },
            ensure_ascii=False,
        )


def under_journald(stream, environ=os.environ) -> bool:
    """Is `stream` the journal's? ``JOURNAL_STREAM`` names (``device:inode``) the stream
    systemd connected; a child whose stderr was redirected elsewhere inherits the variable,
    so the stream itself must match it."""
    value = environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return bool(value) and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (AttributeError, OSError, ValueError):
        return False


def formatter(stream, environ=os.environ) -> logging.Formatter:
    """The line format for `stream`: JSON when asked for; else journald's own timestamps, or
    ours."""
    if environ.get(LOG_FORMAT_ENV) == "json":
        return JsonFormatter()
    if under_journald(stream, environ):
        return RedactingFormatter("%(levelname)s %(name)s: %(message)s")
    return UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def _without_traceback(record: logging.LogRecord) -> bool:
    record.exc_info = record.exc_text = record.stack_info = None
    return True


def setup(level: str = "info", *, stream=None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(stream))
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
