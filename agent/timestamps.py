"""The one format of every time the agent writes for people and programs to read.

ISO-8601 UTC to the millisecond with a `Z`: `2026-12-07T01:02:03.250Z`. The status model, the
spool's `started_at`, every `--json` output, the fleet reports and the log lines all use it, so
one parser (and one eye) reads them all. Not for names on disk or in the bucket (those are
compact stamps, agent/layout.py) nor for the cloud APIs' wire formats (acs.py).
"""

from __future__ import annotations

import time
from typing import overload


@overload
def utc_iso(epoch: float) -> str: ...


@overload
def utc_iso(epoch: None) -> None: ...


@overload
def utc_iso(epoch: float | None) -> str | None: ...


def utc_iso(epoch: float | None) -> str | None:
    """Epoch seconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds cut, not rounded); None
    stays None (a time not known yet)."""
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
