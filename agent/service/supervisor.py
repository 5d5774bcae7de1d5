"""`ipc-agent run`: one child process per camera and one for the uploader, supervised.

A crash inside libav (a segfault, not just an exception), a hang or a leak in one camera never
takes down the others or the uploader: each runs in its own process. The supervisor
- restarts a child that died, with backoff (1 s doubling to 60 s; reset after a minute of
  health), and records why (exit code or signal);
- restarts a child that hangs: each child's stop flag is a `Lifeline` that stamps a shared
  heartbeat whenever the child's loop checks it (every packet, every retry wait), so a loop
  stuck anywhere stops stamping and is killed after `hang_after` seconds;
- on SIGTERM/SIGINT asks every child to stop (a camera finishes its open event into a clip,
  the uploader leaves uploads resumable), kills what is still alive after STOP_TIMEOUT, and
  exits 0;
- on SIGHUP re-reads the config file: only cameras whose settings changed are restarted
  (added ones started, removed ones stopped), the uploader only if its settings changed; an
  invalid file is logged and the running config kept. An accepted fleet document (a thread
  here polls for them, see agent/service/fleet.py) is applied the same way;
- speaks systemd's notify protocol: READY=1 once children are up, WATCHDOG=1 while its own
  loop turns.
A child that exits 0 has finished on purpose (a file source without `loop`) and stays down.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent import __version__
from agent.config import Config, ConfigError
from agent.service.children import camera_main, uploader_main
from agent.service.fleet import ConfigSource, FleetAgent, health_summary, status_model
from agent.service.status import StatusServer, clips_today, disk_summary, iso, queue_summary
from agent.spool import Spool

log = logging.getLogger(__name__)

STOP_TIMEOUT = 30.0  # s a child gets to finish (a camera: its clip) after SIGTERM
TICK = 0.5  # s between supervisor loop turns
BACKOFF = (1.0, 60.0)  # restart backoff: first delay, cap
HEALTHY_AFTER = 60.0  # s of life after which a child's backoff starts over
UPLOADER_HANG = 120.0  # s without a heartbeat before the uploader counts as hung
ENDED_STATES = ("finished", "failed", "unsupported")  # a camera process that ended shows why


@dataclass
class Child:
    """One supervised process and what the supervisor knows about it."""

    name: str  # "camera NAME" or "uploader"
    target: Callable[..., None]
    args: tuple
    hang_after: float
    proc: mp.process.BaseProcess | None = None
    heartbeat: Any = None
    reports: Any = None  # queue of (epoch, snapshot) from the child
    latest: dict = field(default_factory=dict)  # its last snapshot, plus rates
    latest_at: float | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF[0]
    restart_at: float | None = 0.0  # monotonic; None: stays down
    last_reason: str | None = None
    hung: str | None = None  # why the supervisor killed it, until the death is handled
    stop_deadline: float | None = None  # set while asked to stop
    replacement: Child | None = field(default=None, repr=False)  # starts once this one is gone

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def _substream(snap: dict | None) -> dict | None:
    """A camera's sub-stream (detect_url) as status shows it; None without one."""
    if not snap:
        return None
    keys = ("state", "last_error", "codec", "width", "height")
    return {k: snap.get(k) for k in keys}


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


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


class Supervisor:
    def __init__(self, source: ConfigSource) -> None:
        self.source = source
        self.config = source.config
        self.applied_generation = source.generation
        self.fleet: FleetAgent | None = None
        self.ctx = mp.get_context("spawn")
        self.children: dict[str, Child] = {}
        self.stopping = threading.Event()
        self.reload = threading.Event()
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_every = int(usec) / 2e6 if usec and usec.isdigit() else None
        self.last_watchdog = 0.0

    # -- children ------------------------------------------------------------------------------

    def plan(self, config: Config) -> dict[str, Child]:
        """The children a config asks for (not started)."""
        out = {}
        for cam in config.cameras:
            name = f"camera {cam.name}"
            hang = 3 * cam.timeout + 15  # a stalled read ends after `timeout`; allow retries
            out[name] = Child(name, camera_main, (config, cam), hang)
        if config.cloud is not None:
            out["uploader"] = Child("uploader", uploader_main, (config,), UPLOADER_HANG)
        return out

    def start(self, child: Child) -> None:
        child.heartbeat = self.ctx.Value("d", time.monotonic(), lock=False)
        child.reports = self.ctx.Queue(maxsize=4)
        child.proc = self.ctx.Process(
            target=child.target,
            args=(*child.args, child.heartbeat, child.reports),
            name=child.name,
        )
        child.proc.start()
        child.started = time.monotonic()
        child.restart_at = None
        child.stop_deadline = None
        log.info("%s started (pid %d)", child.name, child.proc.pid)

    def ask_to_stop(self, child: Child) -> None:
        if child.proc is not None and child.proc.is_alive() and child.stop_deadline is None:
            child.proc.terminate()  # SIGTERM: finish the clip / leave uploads resumable
            child.stop_deadline = time.monotonic() + STOP_TIMEOUT

    def collect(self, child: Child) -> None:
        """Take the child's latest snapshot; derive frame and bit rates between snapshots."""
        while child.reports is not None:
            try:
                at, snap = child.reports.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            prev, prev_at = child.latest, child.latest_at
            if prev_at is not None and at > prev_at and "packets" in snap:
                # Frames received, not decoded: the gate decodes little of a static scene.
                dt = at - prev_at
                snap["fps"] = max(0.0, (snap["packets"] - prev.get("packets", 0)) / dt)
                snap["bitrate_kbps"] = max(
                    0.0, (snap["bytes"] - prev.get("bytes", 0)) * 8 / dt / 1e3
                )
            child.latest, child.latest_at = snap, at

    def check(self, child: Child, now: float) -> None:
        """One look at a child: start it when due, notice death and hangs, restart."""
        self.collect(child)
        proc = child.proc
        if proc is None:
            if (
                child.restart_at is not None
                and now >= child.restart_at
                and not self.stopping.is_set()
            ):
                self.start(child)
            return
        if proc.is_alive():
            if child.stop_deadline is not None:
                if now >= child.stop_deadline:
                    log.error("%s did not stop in %.0f s; killing it", child.name, STOP_TIMEOUT)
                    proc.kill()
                return
            silent = now - child.heartbeat.value
            if silent <= child.hang_after:
                return
            child.hung = f"hung (no heartbeat for {silent:.0f} s)"
            log.error("%s %s; killing it", child.name, child.hung)
            proc.kill()
        code = proc.exitcode
        proc.join()
        child.proc = None
        if child.stop_deadline is not None:  # asked to stop: a reload or shutdown
            child.stop_deadline = None
            if child.replacement is not None:
                self.children[child.name] = child.replacement
                child.replacement.restart_at = now
            return
        hung, child.hung = child.hung, None
        if code == 0 and hung is None:
            log.info("%s finished (exit code 0)", child.name)
            child.restart_at = None
            return
        reason = hung or describe_exit(code)
        child.last_reason = reason
        if now - child.started >= HEALTHY_AFTER:
            child.backoff = BACKOFF[0]
        delay = child.backoff
        child.backoff = min(child.backoff * 2, BACKOFF[1])
        child.restarts += 1
        child.restart_at = now + delay
        log.error("%s died (%s); restart #%d in %.0f s", child.name, reason, child.restarts, delay)

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
        wanted = self.plan(new)
        for name, child in list(self.children.items()):
            if name not in wanted:
                log.info("%s removed from the config; stopping it", name)
                self.ask_to_stop(child)
                child.restart_at = None
        for name, fresh in wanted.items():
            old = self.children.get(name)
            if old is None:
                log.info("%s added to the config", name)
                self.children[name] = fresh
            elif self._settings(old) != self._settings(fresh):
                log.info("%s: settings changed; restarting it", name)
                if old.proc is None:
                    self.children[name] = fresh
                else:
                    old.replacement = fresh
                    fresh.restart_at = None
                    self.ask_to_stop(old)
        self.config = new
        log.info("%s (version %s)", why, new.version)

    @staticmethod
    def _settings(child: Child) -> Any:
        config = child.args[0]
        if child.name == "uploader":
            return (config.agent, config.cloud, config.upload)
        return (config.agent, child.args[1])

    # -- the loop ------------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload.set())
        self.started = time.monotonic()
        self.status = StatusServer(self.config.agent.data_dir, self.model)
        self.status.start()
        if self.config.fleet.enabled and self.source.path is not None:
            self.fleet = FleetAgent(self.source, lambda: health_summary(self.model()))
            self.fleet.start()
        self.children = self.plan(self.config)
        for child in self.children.values():
            self.start(child)
        cameras = sum(name.startswith("camera ") for name in self.children)
        log.info(
            "agent running with %d camera(s)%s; data in %s",
            cameras,
            " and the uploader" if "uploader" in self.children else "",
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
            for child in list(self.children.values()):
                self.check(child, now)
            if self.watchdog_every and now - self.last_watchdog >= self.watchdog_every:
                sd_notify("WATCHDOG=1")
                self.last_watchdog = now
            if once and not any(
                c.proc is not None or c.restart_at is not None
                for n, c in self.children.items()
                if n.startswith("camera ")
            ):
                log.info("every source has ended")
                break
        return self.shutdown()

    def model(self) -> dict[str, Any]:
        """The status model (see agent/service/status.py) of the running daemon."""
        now = time.time()
        spool = Spool(self.config.agent.data_dir)
        try:
            today = clips_today(spool, now)
            queue_info = queue_summary(spool, now)
        finally:
            spool.close()
        cameras = []
        uploader = None
        for child in list(self.children.values()):
            snap = dict(child.latest)
            alive = child.proc is not None and child.proc.is_alive()
            entry = {
                "pid": child.pid if alive else None,
                "restarts": child.restarts,
                "last_restart_reason": child.last_reason,
            }
            if child.name == "uploader":
                uploader = {
                    **entry,
                    "cloud_reachable": snap.get("cloud_reachable"),
                    "offline_reason": snap.get("offline_reason"),
                    "last_error": snap.get("last_error"),
                    "last_error_at": iso(snap.get("last_error_at")),
                    "drops": snap.get("drops", 0),
                }
                continue
            name = child.name.removeprefix("camera ")
            state = (
                snap.get("state", "connecting")
                if alive
                else "restarting"
                if child.restart_at is not None
                else (snap.get("state") if snap.get("state") in ENDED_STATES else "stopped")
            )
            last_packet = snap.get("last_packet_wall")
            cameras.append(
                {
                    "name": name,
                    "state": state,
                    **entry,
                    "codec": snap.get("codec") or None,
                    "width": snap.get("width") or 0,
                    "height": snap.get("height") or 0,
                    "fps": snap.get("fps"),
                    "bitrate_kbps": snap.get("bitrate_kbps"),
                    "last_frame_age_s": round(now - last_packet, 1) if last_packet else None,
                    "last_motion": iso(snap.get("last_motion_wall")),
                    "clips_today": today.get(name, 0),
                    "last_error": snap.get("last_error"),
                    "detect_on": snap.get("detect_on"),  # "main", or "sub" with detect_url
                    "substream": _substream(snap.get("substream")),
                }
            )
        return {
            "daemon": {
                "running": True,
                "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - self.started, 1),
                "version": __version__,
            },
            "config": {"source": self.config.source, "version": self.config.version},
            "cameras": cameras,
            "uploader": uploader,
            "queue": queue_info,
            "disk": disk_summary(self.config.agent.data_dir),
            "fleet": (
                self.fleet.status()
                if self.fleet is not None
                else status_model(self.config, {}, None, None)
            ),
        }

    def shutdown(self) -> int:
        sd_notify("STOPPING=1")
        if self.fleet is not None:
            self.fleet.stop()
        log.info("stopping: finishing open clips")
        for child in self.children.values():
            self.ask_to_stop(child)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in self.children.values():
            if child.proc is None:
                continue
            child.proc.join(max(0.0, deadline - time.monotonic()))
            if child.proc.is_alive():
                log.error("%s did not stop in %.0f s; killing it", child.name, STOP_TIMEOUT)
                child.proc.kill()
                child.proc.join()
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
    spool.recover(config.agent.data_dir / "clips")
    spool.close()
    return Supervisor(source).run(once=once)
