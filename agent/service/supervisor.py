"""`ipc-agent run`: cameras in a few worker processes and the uploader in one, supervised.

Each camera runs as a thread of a camera worker, `cameras_per_worker` of them per worker process
(by default a quarter of the cameras, 1 to 8: up to 4 cameras have a process each, 32 cameras
four of 8): libavcodec and numpy work outside the GIL, and the interpreter, the libraries
and their heap (~30 MB) are paid once per worker instead of once per camera. Workers are forked
from a server process that has imported what they run (multiprocessing's forkserver), so they
share its pages too. The price is the blast radius: a crash inside libav (a segfault, not just
an exception) or a hang takes down the cameras of its worker, not the others or the uploader;
`cameras_per_worker = 1` gives every camera a process of its own. The supervisor
- restarts cameras whose worker died, with backoff (1 s doubling to 60 s; reset after a minute
  of health), in a fresh worker, and records why (exit code or signal); a camera whose thread
  died of an exception is restarted the same way, alone;
- kills a worker with a hung camera: each camera's stop flag is a `Lifeline` that stamps its
  slot of the worker's shared heartbeats whenever the camera's loop checks it (every packet,
  every retry wait), so a loop stuck anywhere stops stamping; after `hang_after` seconds its
  worker is killed and its cameras restarted;
- on SIGTERM/SIGINT asks every child to stop (a camera finishes its open event into a clip,
  the uploader leaves uploads resumable), kills what is still alive after STOP_TIMEOUT, and
  exits 0;
- on SIGHUP re-reads the config file: only cameras whose settings changed are restarted
  (added ones started, removed ones stopped; a worker takes commands for that), the uploader
  only if its settings changed; an invalid file is logged and the running config kept. An
  accepted fleet document (a thread here polls for them, see agent/service/fleet.py) is
  applied the same way;
- speaks systemd's notify protocol: READY=1 once children are up, WATCHDOG=1 while its own
  loop turns.
Children end when the supervisor dies, by any signal (agent/service/children.py).
A camera whose source finished (a file without `loop`) stays down.

The parts: agent/service/workers.py places cameras in workers and restarts them,
agent/service/uploader_process.py keeps the uploader up, agent/service/supervised.py has what
every child shares (stop deadline, backoff), agent/service/model.py assembles the status; this
module runs the loop, takes the signals, applies configs and speaks to systemd.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time

from agent import layout
from agent.config import ConfigError
from agent.config_source import ConfigSource
from agent.service.fleet import FleetAgent, health_summary
from agent.service.model import StatusModel, assemble, fleet_status
from agent.service.status import StatusServer
from agent.service.supervised import STOP_TIMEOUT, Child, ask_to_stop, kill_if_overdue
from agent.service.uploader_process import UploaderProcess
from agent.service.workers import CameraWorkers
from agent.spool import Spool
from agent.spool_repair import recover

log = logging.getLogger(__name__)

TICK = 0.5  # s between supervisor loop turns


def sd_notify(message: str) -> bool:
    """Send one datagram to systemd's notify socket, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify %s failed: %s", message.split("=")[0], exc)
        return False
    return True


class Watchdog:
    """systemd's watchdog: WATCHDOG=1 every WATCHDOG_USEC / 2 while the loop turns."""

    def __init__(self) -> None:
        usec = os.environ.get("WATCHDOG_USEC")
        self.every = int(usec) / 2e6 if usec and usec.isdigit() else None
        self.last = 0.0

    def pet(self, now: float) -> None:
        if self.every and now - self.last >= self.every:
            sd_notify("WATCHDOG=1")
            self.last = now


class Supervisor:
    def __init__(self, source: ConfigSource) -> None:
        self.source = source
        self.config = source.config
        self.applied_generation = source.generation
        self.fleet: FleetAgent | None = None
        # Children are forked from a server process that imported only what they run; its
        # pages (the interpreter, numpy, PyAV and the agent's code) are shared by them all.
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["agent.service.children"])
        self.stopping = threading.Event()
        self.reload = threading.Event()
        self.workers = CameraWorkers(ctx, self.config)
        self.uploader = UploaderProcess(ctx, self.config, self.stopping)
        self.watchdog = Watchdog()
        self.started = time.monotonic()

    def children(self) -> list[Child]:
        """The uploader (if any) and the camera workers."""
        uploader = [self.uploader.child] if self.uploader.child is not None else []
        return uploader + list(self.workers.workers.values())

    def check(self, now: float) -> None:
        self.uploader.check(now)
        for worker in list(self.workers.workers.values()):
            self.workers.check(worker, now)
        if not self.stopping.is_set():
            self.workers.start_due(now)

    # -- reload --------------------------------------------------------------------------------

    def apply_reload(self) -> None:
        """SIGHUP: read the local file (and stored fleet documents) again; check the bucket."""
        try:
            self.source.reload()
        except ConfigError as exc:
            log.error("SIGHUP: %s; keeping the running config", exc)
            return
        if self.fleet is not None:
            self.fleet.force = True
            self.fleet.wake.set()
        self.apply_config(f"config reloaded from {self.source.path}")

    def apply_config(self, why: str) -> None:
        """Bring the children in line with the source's config: restart only what changed."""
        self.applied_generation = self.source.generation
        new = self.source.config
        self.workers.apply(new, agent_changed=new.agent != self.config.agent)
        self.uploader.apply(new)
        self.config = new
        log.info("%s (version %s)", why, new.version)

    # -- the loop ------------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload.set())
        self.started = time.monotonic()
        self.status = StatusServer(self.config.agent.data_dir, self.model)
        self.status.start()
        if self.config.fleet.enabled and self.source.path is not None:
            self.fleet = FleetAgent(self.source, lambda: health_summary(self.model().as_dict()))
            self.fleet.start()
        if self.uploader.child is not None:
            self.uploader.start()
        self.check(time.monotonic())  # starts the cameras' workers
        log.info(
            "agent running with %d camera(s) in %d worker(s)%s; data in %s",
            len(self.workers.cameras),
            len(self.workers.workers),
            " and the uploader" if self.uploader.child is not None else "",
            self.config.agent.data_dir,
        )
        sd_notify("READY=1\nSTATUS=running")
        while not self.stopping.wait(TICK):
            now = time.monotonic()
            if self.reload.is_set():
                self.reload.clear()
                self.apply_reload()
            if self.source.generation != self.applied_generation:
                self.apply_config("fleet document applied")
            self.check(now)
            self.watchdog.pet(now)
            if once and not any(
                c.running or c.restart_at is not None for c in self.workers.cameras.values()
            ):
                log.info("every source has ended")
                break
        return self.shutdown()

    def model(self) -> StatusModel:
        """The status model (agent/service/model.py) of the running daemon."""
        fleet = (
            self.fleet.status()
            if self.fleet is not None
            else fleet_status(self.config, {}, None, None)
        )
        return assemble(
            self.config,
            fleet,
            started=self.started,
            cameras=[camera.for_status() for camera in list(self.workers.cameras.values())],
            uploader=self.uploader.for_status(),
        )

    def shutdown(self) -> int:
        sd_notify("STOPPING=1")
        if self.fleet is not None:
            self.fleet.stop()
        log.info("stopping: finishing open clips")
        children = self.children()
        for child in children:
            ask_to_stop(child)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children:
            collect = self.workers.collect if child.commands is not None else self.uploader.collect
            # Drain its reports while it finishes: a child blocked on a full pipe never exits.
            while child.proc is not None and child.proc.is_alive():
                collect(child)
                kill_if_overdue(child, deadline, time.monotonic())
                child.proc.join(TICK)
        self.status.close()
        log.info("stopped")
        return 0


def run(source: ConfigSource, *, once: bool = False) -> int:
    """Run every configured camera (and the uploader) until SIGTERM/SIGINT; the exit code.

    `once`: also return when every camera has ended by itself (file sources without `loop`);
    for demos, tests and batch imports. Live cameras never end by themselves.
    """
    config = source.config
    if not config.cameras and config.cloud is None:
        log.error("%s: no [[cameras]] and no [cloud] configured; nothing to do", config.source)
        return 2
    spool = Spool(config.agent.data_dir)
    recover(spool, layout.clips_dir(config.agent.data_dir))
    spool.close()
    return Supervisor(source).run(once=once)
