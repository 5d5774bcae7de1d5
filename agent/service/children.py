"""What runs in the supervisor's child processes: a camera's pipeline, the uploader.

Kept apart from agent/service/supervisor.py so that a child imports only what it runs: children
are spawned (a fresh interpreter each), and the supervisor's own imports (the fleet agent and
its cryptography, the status server) would cost every camera process ~10 MB of memory.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from agent import logs
from agent.capture.catalog import SpoolSink
from agent.capture.pipeline import CameraPipeline, snapshot
from agent.capture.source import SourceError
from agent.config import CameraConfig, Config
from agent.spool import Spool

log = logging.getLogger(__name__)

REPORT_EVERY = 2.0  # s between a child's status snapshots


class Lifeline(threading.Event):
    """A child's stop flag that also proves the child's loop is alive.

    The capture loop checks `is_set()` for every packet and sleeps in `wait()` between
    retries; both stamp `heartbeat` (monotonic seconds, shared with the supervisor), `wait()`
    at least once a second however long it sleeps.
    """

    def __init__(self, heartbeat: Any, reports: Any = None) -> None:
        super().__init__()
        self.heartbeat = heartbeat
        self.reports = reports  # queue to the supervisor, for status
        self.report: Callable[[], dict] | None = None  # what to send there
        self._last = 0.0
        self._last_report = 0.0

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._last >= 0.5:
            self.heartbeat.value = now
            self._last = now
        if self.report is not None and now - self._last_report >= REPORT_EVERY:
            self._last_report = now
            with contextlib.suppress(queue.Full):
                self.reports.put_nowait((time.time(), self.report()))

    def is_set(self) -> bool:
        self.beat()
        return super().is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.beat()
            step = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if step <= 0:
                return super().is_set()
            if super().wait(step):
                return True


def _child_setup(config: Config, heartbeat: Any, reports: Any) -> Lifeline:
    logs.setup(config.agent.log_level)
    stop = Lifeline(heartbeat, reports)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the supervisor's business
    stop.beat()
    return stop


def camera_main(config: Config, cam: CameraConfig, heartbeat: Any, reports: Any) -> None:
    """Entry point of a camera's child process."""
    stop = _child_setup(config, heartbeat, reports)
    spool = Spool(config.agent.data_dir)
    spool.publish_partial(cam.name)  # what this camera's previous process was cut off in
    pipe = CameraPipeline(cam, SpoolSink(spool), stop)
    stop.report = lambda: snapshot(pipe)
    try:
        pipe.run()
    except SourceError as exc:
        log.error("%s: %s", cam.name, exc)
    finally:
        spool.close()
        # The last word for status (finished, unsupported, failed, and why): the periodic
        # report may never have gone out, e.g. for a file that cannot be opened.
        with contextlib.suppress(queue.Full):
            reports.put((time.time(), snapshot(pipe)), timeout=1.0)
    if not stop.is_set():
        log.info("%s: source finished", cam.name)


def uploader_main(config: Config, heartbeat: Any, reports: Any) -> None:
    """Entry point of the uploader's child process: drains the spool to the cloud."""
    from agent.deliver.uploader import from_config

    stop = _child_setup(config, heartbeat, reports)
    uploader = from_config(config)
    stop.report = uploader.snapshot
    uploader.run(stop)
