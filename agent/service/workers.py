"""Cameras in camera workers: placing them in slots, their reports, hangs, deaths, restarts.

Each camera runs as a thread of a worker process, `cameras_per_worker` to a worker
(agent/service/supervisor.py says why). A camera starts in a running worker with a free slot
(its own previous one first), else in a new worker; a camera whose thread ended, or whose
worker died or was killed for a hang, is restarted with backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.config import CameraConfig, Config
from agent.service.children import ENDED, SNAPSHOT, worker_main
from agent.service.model import Run
from agent.service.supervised import (
    BACKOFF,
    Child,
    ask_to_stop,
    describe_exit,
    reports,
    restart_later,
    stopping,
)

log = logging.getLogger(__name__)

ENDED_STATES = ("finished", "failed", "unsupported")  # a camera that ended shows why


@dataclass
class Camera:
    """One configured camera and what the supervisor knows about it; it runs as a thread of a
    worker (`worker`, heartbeat `slot`) while `running`."""

    cam: CameraConfig
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

    @property
    def hang_after(self) -> float:
        return 3 * self.cam.timeout + 15  # a stalled read ends after `timeout`; allow retries

    def for_status(self) -> Run:
        """This camera as the status model takes it."""
        snap = self.latest
        worker = self.worker
        alive = self.running and worker is not None and worker.pid is not None
        state = (
            snap.get("state", "connecting")
            if alive
            else "restarting"
            if self.restart_at is not None
            else (snap.get("state") if snap.get("state") in ENDED_STATES else "stopped")
        )
        return Run(
            self.name,
            state,
            pid=worker.pid if alive and worker is not None else None,
            worker=worker.name if alive and worker is not None else None,
            restarts=self.restarts,
            last_restart_reason=self.last_reason,
            snapshot=snap,
        )


def add_rates(snap: dict, prev: dict, prev_at: float | None, at: float) -> None:
    """Frame and bit rates between two snapshots of a camera, into `snap`."""
    if prev_at is not None and at > prev_at and "packets" in snap:
        # Frames received, not decoded: the gate decodes little of a static scene.
        dt = at - prev_at
        snap["fps"] = max(0.0, (snap["packets"] - prev.get("packets", 0)) / dt)
        snap["bitrate_kbps"] = max(0.0, (snap["bytes"] - prev.get("bytes", 0)) * 8 / dt / 1e3)


def kill_if_hung(worker: Child, cameras: Iterable[Camera], now: float) -> None:
    """Kill the worker when one of its cameras has not stamped its heartbeat for its
    `hang_after`: a loop stuck anywhere stops stamping."""
    for camera in cameras:
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
            worker.proc.kill()
            return


class CameraWorkers:
    """The configured cameras and the worker processes they run in."""

    def __init__(self, ctx: Any, config: Config) -> None:
        self.ctx = ctx  # multiprocessing's forkserver context
        self.config = config
        self.cameras = {cam.name: Camera(cam) for cam in config.cameras}
        self.workers: dict[str, Child] = {}
        self.count = 0  # workers started so far (their names count up)

    def start_worker(self, cameras: list[Camera], now: float) -> Child:
        """A new worker process running `cameras` (at most cameras_per_worker)."""
        size = self.config.agent.per_worker(len(self.cameras))
        self.count += 1
        worker = Child(f"worker {self.count}", worker_main, (), 0.0)
        worker.slots = [None] * size
        heartbeats = self.ctx.Array("d", [time.monotonic()] * size, lock=False)
        worker.heartbeat = heartbeats
        worker.reports = self.ctx.Queue(maxsize=8 * size)
        worker.commands = self.ctx.Queue()
        placed = []
        for slot, camera in enumerate(cameras):
            worker.slots[slot] = camera.name
            placed.append((slot, camera.cam))
            self.placed(camera, worker, slot, now)
        worker.proc = self.ctx.Process(
            target=worker_main,
            args=(self.config, placed, heartbeats, worker.reports, worker.commands),
            name=worker.name,
        )
        worker.proc.start()
        worker.started = now
        worker.restart_at = None
        self.workers[worker.name] = worker
        names = ", ".join(c.name for c in cameras)
        log.info("%s started (pid %d): %s", worker.name, worker.proc.pid, names)
        for camera in cameras:
            log.info("camera %s started in %s (pid %d)", camera.name, worker.name, worker.pid)
        return worker

    @staticmethod
    def placed(camera: Camera, worker: Child, slot: int, now: float) -> None:
        camera.worker, camera.slot, camera.running = worker, slot, True
        camera.started, camera.restart_at, camera.stopping = now, None, False
        if worker.heartbeat is not None:
            worker.heartbeat[slot] = time.monotonic()

    def open_slots(self) -> list[Child]:
        """Running workers that take cameras and have a free slot."""
        return [
            w
            for w in self.workers.values()
            if w.proc is not None
            and w.proc.is_alive()
            and w.stop_deadline is None
            and w.hung is None
            and not w.retiring
            and None in w.slots
        ]

    def place(self, due: list[Camera], now: float) -> None:
        """Start cameras whose time has come: in a running worker with a free slot (its own
        previous one first), else in new workers of up to cameras_per_worker each."""
        rest = []
        for camera in due:
            workers = self.open_slots()
            workers.sort(key=lambda w: w is not camera.worker)
            if not workers:
                rest.append(camera)
                continue
            worker = workers[0]
            slot = worker.slots.index(None)
            worker.slots[slot] = camera.name
            self.placed(camera, worker, slot, now)
            worker.commands.put(("start", slot, camera.cam))
            log.info("camera %s started in %s (pid %d)", camera.name, worker.name, worker.pid)
        size = self.config.agent.per_worker(len(self.cameras))
        for i in range(0, len(rest), size):
            self.start_worker(rest[i : i + size], now)

    def start_due(self, now: float) -> None:
        due = [
            c
            for c in self.cameras.values()
            if not c.running and c.restart_at is not None and now >= c.restart_at
        ]
        if due:
            self.place(due, now)

    def stop_camera(self, camera: Camera) -> None:
        """Ask a running camera's thread to finish (its clip) and end."""
        if camera.running and not camera.stopping and camera.worker is not None:
            camera.stopping = True
            camera.worker.commands.put(("stop", camera.name))

    def collect(self, worker: Child) -> None:
        """Take the worker's reports: snapshots (with rates derived) and ended cameras."""
        for kind, name, at, payload in reports(worker):
            camera = self.cameras.get(name)
            if camera is None or camera.worker is not worker:
                continue
            if kind == SNAPSHOT:
                add_rates(payload, camera.latest, camera.latest_at, at)
                camera.latest, camera.latest_at = payload, at
            elif kind == ENDED:
                self.ended(camera, payload, time.monotonic())

    def ended(self, camera: Camera, outcome: str | None, now: float) -> None:
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
                fresh = Camera(camera.replacement)
                fresh.worker, fresh.restart_at = worker, now  # back in its slot if free
                self.cameras[camera.name] = fresh
            return
        if outcome is None:
            log.info("camera %s finished", camera.name)
            camera.restart_at = None
            return
        restart_later(camera, f"camera {camera.name}", outcome, now)

    def check(self, worker: Child, now: float) -> None:
        """One look at a camera worker: its reports, hung cameras, its death."""
        self.collect(worker)
        proc = worker.proc
        if proc is None:
            return
        if proc.is_alive():
            if stopping(worker, now):
                return
            if worker.hung is None:
                kill_if_hung(worker, self.cameras.values(), now)
            if proc.is_alive():
                if not any(worker.slots) and worker.stop_deadline is None:
                    ask_to_stop(worker)  # no camera left in it
                return
        code = proc.exitcode
        proc.join()
        worker.proc = None
        self.collect(worker)  # what it said before it went
        self.workers.pop(worker.name, None)
        hung, worker.hung = worker.hung, None
        reason = describe_exit(code)
        stranded = [c for c in self.cameras.values() if c.worker is worker and c.running]
        if stranded and worker.stop_deadline is None:
            down = ", ".join(c.name for c in stranded)
            log.error("%s (pid %d) died (%s): %s down with it", worker.name, proc.pid, reason, down)
        for camera in stranded:
            if camera.name == hung:
                why = camera.last_reason
            elif hung is not None:
                why = f"its worker was killed: camera {hung} hung"
            else:
                why = f"its worker died ({reason})"
            self.ended(camera, why, now)

    def apply(self, config: Config, agent_changed: bool) -> None:
        """Bring the cameras in line with `config`: stop removed ones, add new ones, restart
        those whose settings changed (all of them when [agent] changed)."""
        cameras = {cam.name: Camera(cam) for cam in config.cameras}
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
        if agent_changed:  # e.g. cameras_per_worker: new workers for the restarted cameras
            for worker in self.workers.values():
                worker.retiring = True
        self.config = config
