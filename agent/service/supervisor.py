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
from agent.config import CameraConfig, Config, ConfigError
from agent.config_source import ConfigSource
from agent.service.children import ENDED, SNAPSHOT, uploader_main, worker_main
from agent.service.fleet import FleetAgent, health_summary, status_model
from agent.service.status import StatusServer, clips_today, disk_summary, iso, queue_summary
from agent.spool import Spool
from agent.spool_repair import recover

log = logging.getLogger(__name__)

STOP_TIMEOUT = 30.0  # s a child gets to finish (a camera: its clip) after SIGTERM
TICK = 0.5  # s between supervisor loop turns
BACKOFF = (1.0, 60.0)  # restart backoff: first delay, cap
HEALTHY_AFTER = 60.0  # s of life after which a child's backoff starts over
UPLOADER_HANG = 120.0  # s without a heartbeat before the uploader counts as hung
ENDED_STATES = ("finished", "failed", "unsupported")  # a camera that ended shows why


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


@dataclass
class Camera:
    """One configured camera and what the supervisor knows about it; it runs as a thread of a
    worker (`worker`, heartbeat `slot`) while `running`."""

    cam: CameraConfig
    hang_after: float
    worker: Child | None = None
    slot: int = -1
    running: bool = False
    latest: dict = field(default_factory=dict)  # its last snapshot, plus rates
    latest_at: float | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF[0]
    restart_at: float | None = 0.0  # monotonic; None: running, or stays down
    last_reason: str | None = None
    stopping: bool = False  # asked to stop (removed, or its settings changed)
    replacement: CameraConfig | None = None  # starts once this one has stopped
    removed: bool = False

    @property
    def name(self) -> str:
        return self.cam.name


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


def _rates(snap: dict, prev: dict, prev_at: float | None, at: float) -> None:
    """Frame and bit rates between two snapshots of a camera, into `snap`."""
    if prev_at is not None and at > prev_at and "packets" in snap:
        # Frames received, not decoded: the gate decodes little of a static scene.
        dt = at - prev_at
        snap["fps"] = max(0.0, (snap["packets"] - prev.get("packets", 0)) / dt)
        snap["bitrate_kbps"] = max(0.0, (snap["bytes"] - prev.get("bytes", 0)) * 8 / dt / 1e3)


def _restart_later(who: Camera | Child, name: str, reason: str, now: float) -> None:
    """Schedule a restart of what died, with backoff (reset after HEALTHY_AFTER of life)."""
    who.last_reason = reason
    if now - who.started >= HEALTHY_AFTER:
        who.backoff = BACKOFF[0]
    delay = who.backoff
    who.backoff = min(who.backoff * 2, BACKOFF[1])
    who.restarts += 1
    who.restart_at = now + delay
    log.error("%s died (%s); restart #%d in %.0f s", name, reason, who.restarts, delay)


class Supervisor:
    def __init__(self, source: ConfigSource) -> None:
        self.source = source
        self.config = source.config
        self.applied_generation = source.generation
        self.fleet: FleetAgent | None = None
        # Children are forked from a server process that imported only what they run; its
        # pages (the interpreter, numpy, PyAV and the agent's code) are shared by them all.
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(["agent.service.children"])
        self.children: dict[str, Child] = {}  # the uploader and the camera workers
        self.cameras: dict[str, Camera] = {}
        self.workers = 0  # workers started so far (their names count up)
        self.stopping = threading.Event()
        self.reload = threading.Event()
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_every = int(usec) / 2e6 if usec and usec.isdigit() else None
        self.last_watchdog = 0.0

    # -- children ------------------------------------------------------------------------------

    def plan(self, config: Config) -> tuple[dict[str, Camera], Child | None]:
        """The cameras and the uploader a config asks for (not started)."""
        cameras = {}
        for cam in config.cameras:
            hang = 3 * cam.timeout + 15  # a stalled read ends after `timeout`; allow retries
            cameras[cam.name] = Camera(cam, hang)
        uploader = None
        if config.cloud is not None:
            uploader = Child("uploader", uploader_main, (config,), UPLOADER_HANG)
        return cameras, uploader

    def start(self, child: Child) -> None:
        """Start the uploader's process."""
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

    def start_worker(self, cameras: list[Camera], now: float) -> Child:
        """A new worker process running `cameras` (at most cameras_per_worker)."""
        size = self.config.agent.per_worker(len(self.cameras))
        self.workers += 1
        worker = Child(f"worker {self.workers}", worker_main, (), 0.0)
        worker.slots = [None] * size
        heartbeats = self.ctx.Array("d", [time.monotonic()] * size, lock=False)
        worker.heartbeat = heartbeats
        worker.reports = self.ctx.Queue(maxsize=8 * size)
        worker.commands = self.ctx.Queue()
        placed = []
        for slot, camera in enumerate(cameras):
            worker.slots[slot] = camera.name
            placed.append((slot, camera.cam))
            self._placed(camera, worker, slot, now)
        worker.proc = self.ctx.Process(
            target=worker_main,
            args=(self.config, placed, heartbeats, worker.reports, worker.commands),
            name=worker.name,
        )
        worker.proc.start()
        worker.started = now
        worker.restart_at = None
        self.children[worker.name] = worker
        log.info(
            "%s started (pid %d): %s",
            worker.name,
            worker.proc.pid,
            ", ".join(c.name for c in cameras),
        )
        for camera in cameras:
            log.info("camera %s started in %s (pid %d)", camera.name, worker.name, worker.pid)
        return worker

    def _placed(self, camera: Camera, worker: Child, slot: int, now: float) -> None:
        camera.worker, camera.slot, camera.running = worker, slot, True
        camera.started, camera.restart_at, camera.stopping = now, None, False
        if worker.heartbeat is not None:
            worker.heartbeat[slot] = time.monotonic()

    def place(self, due: list[Camera], now: float) -> None:
        """Start cameras whose time has come: in a running worker with a free slot (its own
        previous one first), else in new workers of up to cameras_per_worker each."""
        rest = []
        for camera in due:
            workers = [
                w
                for w in self.children.values()
                if w.commands is not None
                and w.proc is not None
                and w.proc.is_alive()
                and w.stop_deadline is None
                and w.hung is None
                and not w.retiring
                and None in w.slots
            ]
            workers.sort(key=lambda w: w is not camera.worker)
            if not workers:
                rest.append(camera)
                continue
            worker = workers[0]
            slot = worker.slots.index(None)
            worker.slots[slot] = camera.name
            self._placed(camera, worker, slot, now)
            worker.commands.put(("start", slot, camera.cam))
            log.info("camera %s started in %s (pid %d)", camera.name, worker.name, worker.pid)
        size = self.config.agent.per_worker(len(self.cameras))
        for i in range(0, len(rest), size):
            self.start_worker(rest[i : i + size], now)

    def ask_to_stop(self, child: Child) -> None:
        if child.proc is not None and child.proc.is_alive() and child.stop_deadline is None:
            child.proc.terminate()  # SIGTERM: finish the clips / leave uploads resumable
            child.stop_deadline = time.monotonic() + STOP_TIMEOUT

    @staticmethod
    def _stopping(child: Child, now: float) -> bool:
        """Whether a live child was asked to stop; killed once STOP_TIMEOUT has passed."""
        if child.stop_deadline is None:
            return False
        if now >= child.stop_deadline:
            log.error("%s did not stop in %.0f s; killing it", child.name, STOP_TIMEOUT)
            child.proc.kill()
        return True

    def stop_camera(self, camera: Camera) -> None:
        """Ask a running camera's thread to finish (its clip) and end."""
        if camera.running and not camera.stopping and camera.worker is not None:
            camera.stopping = True
            camera.worker.commands.put(("stop", camera.name))

    def collect(self, child: Child) -> None:
        """Take the child's reports: snapshots (with rates derived) and ended cameras."""
        while child.reports is not None:
            try:
                kind, name, at, payload = child.reports.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):
                return
            if child.commands is None:  # the uploader
                child.latest, child.latest_at = payload, at
                continue
            camera = self.cameras.get(name)
            if camera is None or camera.worker is not child:
                continue
            if kind == SNAPSHOT:
                _rates(payload, camera.latest, camera.latest_at, at)
                camera.latest, camera.latest_at = payload, at
            elif kind == ENDED:
                self._ended(camera, payload, time.monotonic())

    def _ended(self, camera: Camera, outcome: str | None, now: float) -> None:
        """A camera's thread has ended (or its worker died): restart it, or let it rest."""
        worker = camera.worker
        if worker is not None and 0 <= camera.slot < len(worker.slots):
            worker.slots[camera.slot] = None
        camera.running, camera.slot = False, -1
        if camera.stopping or camera.removed:
            camera.stopping = False
            camera.restart_at = None
            if camera.removed:
                self.cameras.pop(camera.name, None)
            elif camera.replacement is not None:
                fresh = Camera(camera.replacement, 3 * camera.replacement.timeout + 15)
                fresh.worker, fresh.restart_at = worker, now  # back in its slot if free
                self.cameras[camera.name] = fresh
            return
        if outcome is None:
            log.info("camera %s finished", camera.name)
            camera.restart_at = None
            return
        _restart_later(camera, f"camera {camera.name}", outcome, now)

    def check_worker(self, worker: Child, now: float) -> None:
        """One look at a camera worker: its reports, hung cameras, its death."""
        self.collect(worker)
        proc = worker.proc
        if proc is None:
            return
        if proc.is_alive():
            if self._stopping(worker, now):
                return
            if worker.hung is None:
                for camera in self.cameras.values():
                    if camera.worker is not worker or not camera.running:
                        continue
                    silent = now - worker.heartbeat[camera.slot]
                    if silent > camera.hang_after:
                        worker.hung = camera.name
                        camera.last_reason = f"hung (no heartbeat for {silent:.0f} s)"
                        others = [n for n in worker.slots if n and n != camera.name]
                        log.error(
                            "camera %s %s; killing %s (pid %d)%s",
                            camera.name,
                            camera.last_reason,
                            worker.name,
                            worker.pid,
                            f" and with it {', '.join(others)}" if others else "",
                        )
                        proc.kill()
                        break
            if proc.is_alive():
                if not any(worker.slots) and worker.stop_deadline is None:
                    self.ask_to_stop(worker)  # no camera left in it
                return
        code = proc.exitcode
        proc.join()
        worker.proc = None
        self.collect(worker)  # what it said before it went
        self.children.pop(worker.name, None)
        hung, worker.hung = worker.hung, None
        reason = describe_exit(code)
        stranded = [c for c in self.cameras.values() if c.worker is worker and c.running]
        if stranded and worker.stop_deadline is None:
            log.error(
                "%s (pid %d) died (%s): %s down with it",
                worker.name,
                proc.pid,
                reason,
                ", ".join(c.name for c in stranded),
            )
        for camera in stranded:
            if camera.name == hung:
                why = camera.last_reason
            elif hung is not None:
                why = f"its worker was killed: camera {hung} hung"
            else:
                why = f"its worker died ({reason})"
            self._ended(camera, why, now)

    def check_uploader(self, child: Child, now: float) -> None:
        """One look at the uploader: start it when due, notice death and hangs, restart."""
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
            if self._stopping(child, now):
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
            else:
                self.children.pop(child.name, None)
            return
        hung, child.hung = child.hung, None
        if code == 0 and hung is None:
            log.info("%s finished (exit code 0)", child.name)
            child.restart_at = None
            return
        _restart_later(child, child.name, hung or describe_exit(code), now)

    def check(self, now: float) -> None:
        for child in list(self.children.values()):
            if child.commands is None:
                self.check_uploader(child, now)
            else:
                self.check_worker(child, now)
        if not self.stopping.is_set():
            due = [
                c
                for c in self.cameras.values()
                if not c.running and c.restart_at is not None and now >= c.restart_at
            ]
            if due:
                self.place(due, now)

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
        agent_changed = new.agent != self.config.agent
        cameras, uploader = self.plan(new)
        for name, camera in list(self.cameras.items()):
            if name not in cameras:
                log.info("camera %s removed from the config; stopping it", name)
                camera.removed = True
                if camera.running:
                    self.stop_camera(camera)
                else:
                    del self.cameras[name]
        for name, fresh in cameras.items():
            old = self.cameras.get(name)
            if old is None:
                log.info("camera %s added to the config", name)
                self.cameras[name] = fresh
            elif old.cam != fresh.cam or agent_changed:
                log.info("camera %s: settings changed; restarting it", name)
                if old.running:
                    old.replacement = fresh.cam
                    self.stop_camera(old)
                else:
                    self.cameras[name] = fresh
        old_uploader = self.children.get("uploader")
        if uploader is None and old_uploader is not None:
            log.info("uploader removed from the config; stopping it")
            old_uploader.restart_at = None
            self.ask_to_stop(old_uploader)
            if old_uploader.proc is None:
                del self.children["uploader"]
        elif uploader is not None and old_uploader is None:
            log.info("uploader added to the config")
            self.children["uploader"] = uploader
        elif uploader is not None and self._settings(old_uploader) != self._settings(uploader):
            log.info("uploader: settings changed; restarting it")
            if old_uploader.proc is None:
                self.children["uploader"] = uploader
            else:
                old_uploader.replacement = uploader
                uploader.restart_at = None
                self.ask_to_stop(old_uploader)
        if agent_changed:  # e.g. cameras_per_worker: new workers for the restarted cameras
            for worker in self.children.values():
                worker.retiring = worker.commands is not None
        self.config = new
        log.info("%s (version %s)", why, new.version)

    @staticmethod
    def _settings(child: Child) -> Any:
        config = child.args[0]
        return (config.agent, config.cloud, config.upload)

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
        self.cameras, uploader = self.plan(self.config)
        if uploader is not None:
            self.children["uploader"] = uploader
            self.start(uploader)
        self.check(time.monotonic())  # starts the cameras' workers
        log.info(
            "agent running with %d camera(s) in %d worker(s)%s; data in %s",
            len(self.cameras),
            sum(c.commands is not None for c in self.children.values()),
            " and the uploader" if uploader is not None else "",
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
            if self.watchdog_every and now - self.last_watchdog >= self.watchdog_every:
                sd_notify("WATCHDOG=1")
                self.last_watchdog = now
            if once and not any(
                c.running or c.restart_at is not None for c in self.cameras.values()
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
        uploader = None
        child = self.children.get("uploader")
        if child is not None:
            snap = child.latest
            alive = child.proc is not None and child.proc.is_alive()
            uploader = {
                "pid": child.pid if alive else None,
                "restarts": child.restarts,
                "last_restart_reason": child.last_reason,
                "cloud_reachable": snap.get("cloud_reachable"),
                "offline_reason": snap.get("offline_reason"),
                "last_error": snap.get("last_error"),
                "last_error_at": iso(snap.get("last_error_at")),
                "drops": snap.get("drops", 0),
            }
        cameras = []
        for camera in list(self.cameras.values()):
            snap = camera.latest
            worker = camera.worker
            alive = camera.running and worker is not None and worker.pid is not None
            state = (
                snap.get("state", "connecting")
                if alive
                else "restarting"
                if camera.restart_at is not None
                else (snap.get("state") if snap.get("state") in ENDED_STATES else "stopped")
            )
            last_packet = snap.get("last_packet_wall")
            cameras.append(
                {
                    "name": camera.name,
                    "state": state,
                    "pid": worker.pid if alive and worker is not None else None,
                    "worker": worker.name if alive and worker is not None else None,
                    "restarts": camera.restarts,
                    "last_restart_reason": camera.last_reason,
                    "codec": snap.get("codec") or None,
                    "width": snap.get("width") or 0,
                    "height": snap.get("height") or 0,
                    "fps": snap.get("fps"),
                    "bitrate_kbps": snap.get("bitrate_kbps"),
                    "last_frame_age_s": round(now - last_packet, 1) if last_packet else None,
                    "last_motion": iso(snap.get("last_motion_wall")),
                    "clips_today": today.get(camera.name, 0),
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
        for child in list(self.children.values()):
            # Drain its reports while it finishes: a child blocked on a full pipe never exits.
            while child.proc is not None and child.proc.is_alive():
                self.collect(child)
                if time.monotonic() >= deadline:
                    log.error("%s did not stop in %.0f s; killing it", child.name, STOP_TIMEOUT)
                    child.proc.kill()
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
    recover(spool, config.agent.data_dir / "clips")
    spool.close()
    return Supervisor(source).run(once=once)
