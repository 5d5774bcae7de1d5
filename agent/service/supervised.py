"""A supervised child process (the uploader, or a camera worker) and what every one shares:
its reports, a stop with a deadline, a restart with backoff, the words for how it ended.

agent/service/supervisor.py runs the loop; agent/service/workers.py places cameras in workers,
agent/service/uploader_process.py keeps the uploader up.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

STOP_TIMEOUT = 30.0  # s a child gets to finish (a camera: its clip) after SIGTERM
BACKOFF = (1.0, 60.0)  # restart backoff: first delay, cap
HEALTHY_AFTER = 60.0  # s of life after which a child's backoff starts over


@dataclass
class Child:
    """One supervised process: the uploader, or a camera worker running a few cameras."""

    name: str  # "uploader" or "worker N"
    target: Callable[..., None]
    args: tuple
    hang_after: float
    proc: mp.process.BaseProcess | None = None
    heartbeat: Any = None  # the uploader's; a worker's cameras have a slot each in `slots`
    reports: Any = None  # queue of (kind, name, epoch, payload) from the child
    latest: dict = field(default_factory=dict)  # the uploader's last snapshot
    latest_at: float | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF[0]
    restart_at: float | None = 0.0  # monotonic; None: stays down
    last_reason: str | None = None
    hung: str | None = None  # why the supervisor killed it, until the death is handled
    stop_deadline: float | None = None  # set while asked to stop
    replacement: Child | None = field(default=None, repr=False)  # starts once this one is gone
    # Camera workers only:
    commands: Any = None  # queue of ("start", slot, CameraConfig) / ("stop", name) to it
    slots: list[str | None] = field(default_factory=list)  # camera name per heartbeat slot
    retiring: bool = False  # takes no new cameras; stops once its cameras have

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class Restartable(Protocol):
    """What `restart_later` schedules: a child process, or a camera in a worker."""

    started: float
    restarts: int
    backoff: float
    restart_at: float | None
    last_reason: str | None


def reports(child: Child) -> Iterator[tuple[str, str, float, Any]]:
    """The child's reports so far, (kind, name, epoch, payload) each; never waits."""
    while child.reports is not None:
        try:
            yield child.reports.get_nowait()
        except (queue.Empty, OSError, ValueError, EOFError):
            return


def ask_to_stop(child: Child) -> None:
    if child.proc is not None and child.proc.is_alive() and child.stop_deadline is None:
        child.proc.terminate()  # SIGTERM: finish the clips / leave uploads resumable
        child.stop_deadline = time.monotonic() + STOP_TIMEOUT


def kill_if_overdue(child: Child, deadline: float, now: float) -> None:
    """Kill a child that outlived the STOP_TIMEOUT it was given to stop."""
    if now >= deadline:
        log.error("%s did not stop in %.0f s; killing it", child.name, STOP_TIMEOUT)
        child.proc.kill()


def stopping(child: Child, now: float) -> bool:
    """Whether a live child was asked to stop; killed once STOP_TIMEOUT has passed."""
    if child.stop_deadline is None:
        return False
    kill_if_overdue(child, child.stop_deadline, now)
    return True


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def restart_later(who: Restartable, name: str, reason: str, now: float) -> None:
    """Schedule a restart of what died, with backoff (reset after HEALTHY_AFTER of life)."""
    who.last_reason = reason
    if now - who.started >= HEALTHY_AFTER:
        who.backoff = BACKOFF[0]
    delay = who.backoff
    who.backoff = min(who.backoff * 2, BACKOFF[1])
    who.restarts += 1
    who.restart_at = now + delay
    log.error("%s died (%s); restart #%d in %.0f s", name, reason, who.restarts, delay)
