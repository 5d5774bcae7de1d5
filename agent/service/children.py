"""What runs in the supervisor's child processes: camera workers and the uploader.

A camera worker runs a few cameras, each in a thread of its own: libavcodec decodes and numpy
works outside the GIL, and the interpreter, the libraries and their heap are paid once per
worker instead of once per camera (agent/service/workers.py places them).

Kept apart from agent/service/supervisor.py so that a child imports only what it runs: the
supervisor's own imports (the fleet agent and its cryptography, the status server) would cost
every worker memory. Children are forked from a server process that has imported this module
and nothing else (multiprocessing's forkserver), so they share its pages.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing as mp
import multiprocessing.connection
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
from agent.spool_repair import publish_partial

log = logging.getLogger(__name__)

REPORT_EVERY = 2.0  # s between a camera's (or the uploader's) status snapshots
COMMAND_POLL = 0.5  # s a worker waits for a command before it looks at its threads again

# Report kinds on a child's queue to the supervisor: (kind, name, epoch, payload).
SNAPSHOT = "snapshot"  # payload: the status snapshot
ENDED = "ended"  # payload: None (the source finished), "stopped", or why the thread crashed


class Heartbeat:
    """One slot of a worker's shared array of heartbeats (monotonic seconds)."""

    def __init__(self, array: Any, index: int) -> None:
        self.array, self.index = array, index

    @property
    def value(self) -> float:
        return self.array[self.index]

    @value.setter
    def value(self, v: float) -> None:
        self.array[self.index] = v


class Lifeline(threading.Event):
    """A camera's (or the uploader's) stop flag that also proves its loop is alive.

    The capture loop checks `is_set()` for every packet and sleeps in `wait()` between
    retries; both stamp `heartbeat` (monotonic seconds, shared with the supervisor), `wait()`
    at least once a second however long it sleeps.
    """

    def __init__(self, heartbeat: Any, reports: Any = None, name: str = "") -> None:
        super().__init__()
        self.heartbeat = heartbeat
        self.reports = reports  # queue to the supervisor, for status
        self.name = name
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
                self.reports.put_nowait((SNAPSHOT, self.name, time.time(), self.report()))

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


# -- process set-up ---------------------------------------------------------------------------

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MMAP_THRESHOLD = 256 * 1024  # bytes; larger blocks (frames, arrays) go back to the kernel


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def die_with_parent(on_stop: Callable[[], None]) -> None:
    """Call `on_stop` when the supervisor dies, by any signal: a camera then finishes its open
    clip and ends, instead of recording on beside the next agent that starts on the same data
    dir, an orphan nobody supervises.

    Children are forked by multiprocessing's forkserver, so the supervisor is not their parent
    and PR_SET_PDEATHSIG cannot tell; the pipe multiprocessing keeps open from the supervisor
    to each child (its "parent sentinel") reads end-of-file when the supervisor is gone."""
    parent = mp.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if sentinel is None:
        return

    def watch() -> None:
        mp.connection.wait([sentinel])
        log.warning("the supervisor is gone; stopping")
        on_stop()

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def tune_malloc() -> None:
    """Make glibc give freed memory back (Linux/glibc; elsewhere nothing).

    By default glibc raises its mmap threshold to the largest block freed so far (up to 32 MB):
    after the first 1080p frames and arrays are freed, later ones come from the heap and per-
    thread arenas that never shrink, and a camera worker sat at ~70 MB more than it used. A
    fixed threshold keeps big blocks in their own mappings, returned on free; two arenas are
    plenty for a handful of threads that mostly wait on sockets and libavcodec."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)
    libc.mallopt(M_ARENA_MAX, 2)


def _child_setup(config: Config, on_stop: Callable[[], None]) -> None:
    tune_malloc()
    logs.setup(config.agent.log_level)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: on_stop())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the supervisor's business
    die_with_parent(on_stop)


# -- camera workers ---------------------------------------------------------------------------


def run_camera(config: Config, cam: CameraConfig, stop: Lifeline, reports: Any) -> None:
    """One camera until its source ends or `stop` is set; reports its last snapshot."""
    spool = Spool(config.agent.data_dir)
    pipe = None
    try:
        publish_partial(spool, cam.name)  # what this camera's previous run was cut off in
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
        if pipe is not None:
            with contextlib.suppress(queue.Full):
                reports.put((SNAPSHOT, cam.name, time.time(), snapshot(pipe)), timeout=1.0)


class _CameraThread:
    def __init__(self, config: Config, cam: CameraConfig, stop: Lifeline, reports: Any) -> None:
        self.cam, self.stop, self.reports = cam, stop, reports
        self.outcome: str | None = None
        self.thread = threading.Thread(
            target=self._run, args=(config,), name=f"camera {cam.name}", daemon=True
        )
        self.thread.start()

    def _run(self, config: Config) -> None:
        try:
            run_camera(config, self.cam, self.stop, self.reports)
        except Exception as exc:  # a bug: the supervisor restarts this camera, with backoff
            log.exception("camera %s crashed", self.cam.name)
            self.outcome = f"crashed: {type(exc).__name__}: {exc}"
            return
        if self.stop.is_set():
            self.outcome = "stopped"
        else:
            log.info("%s: source finished", self.cam.name)


def worker_main(
    config: Config,
    cameras: list[tuple[int, CameraConfig]],
    heartbeats: Any,
    reports: Any,
    commands: Any,
) -> None:
    """Entry point of a camera worker: `cameras` (heartbeat slot, settings) as threads, and
    more as the supervisor sends them: ("start", slot, CameraConfig) or ("stop", name)."""
    stopping = threading.Event()
    running: dict[str, _CameraThread] = {}

    def stop_all() -> None:  # from a signal handler, or the lifeline's thread
        stopping.set()
        for t in list(running.values()):
            t.stop.set()

    _child_setup(config, stop_all)

    def start(slot: int, cam: CameraConfig) -> None:
        stop = Lifeline(Heartbeat(heartbeats, slot), reports, cam.name)
        stop.beat()
        running[cam.name] = _CameraThread(config, cam, stop, reports)

    for slot, cam in cameras:
        start(slot, cam)
    while True:
        try:
            command = commands.get(timeout=COMMAND_POLL)
        except queue.Empty:
            command = None
        except (EOFError, OSError):  # the supervisor is gone
            stop_all()
            command = None
        if command is not None and not stopping.is_set():
            if command[0] == "start":
                start(command[1], command[2])
            elif command[0] == "stop" and command[1] in running:
                running[command[1]].stop.set()
        for name, t in list(running.items()):
            if not t.thread.is_alive():
                del running[name]
                reports.put((ENDED, name, time.time(), t.outcome))
        if stopping.is_set() and not running:
            return


def uploader_main(config: Config, heartbeat: Any, reports: Any) -> None:
    """Entry point of the uploader's child process: drains the spool to the cloud."""
    from agent.deliver.loop import from_config

    stop = Lifeline(heartbeat, reports, "uploader")
    _child_setup(config, stop.set)
    stop.beat()
    uploader = from_config(config)
    stop.report = uploader.snapshot
    uploader.run(stop)
