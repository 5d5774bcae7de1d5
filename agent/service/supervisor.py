"""`ipc-agent run`: one child process per camera, so a crash inside libav stays in its camera.

The parent recovers the spool once, starts the cameras, and on SIGTERM/SIGINT asks each child
to stop; a child finishes its open event into a clip before it exits. Restarts, heartbeats,
status and systemd integration build on this shape.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
import time

from agent import logs
from agent.capture.catalog import SpoolSink
from agent.capture.pipeline import CameraPipeline
from agent.capture.source import SourceError
from agent.config import CameraConfig, Config
from agent.spool import Spool

log = logging.getLogger(__name__)

STOP_TIMEOUT = 30.0  # s a camera gets to finish its clip after SIGTERM before it is killed


def camera_main(config: Config, cam: CameraConfig) -> None:
    """Entry point of a camera's child process."""
    logs.setup(config.agent.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    spool = Spool(config.agent.data_dir)
    pipe = CameraPipeline(cam, SpoolSink(spool), stop)
    try:
        pipe.run()
    except SourceError as exc:
        log.error("%s: %s", cam.name, exc)
    finally:
        spool.close()
    if not stop.is_set():
        log.info("%s: source finished; idle until the agent stops", cam.name)


def uploader_main(config: Config) -> None:
    """Entry point of the uploader's child process: drains the spool to the cloud."""
    from agent.deliver.uploader import from_config

    logs.setup(config.agent.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from_config(config).run(stop)


def run(config: Config, *, once: bool = False) -> int:
    """Run every configured camera until SIGTERM/SIGINT. Returns the exit code.

    `once`: also return when every camera process has ended by itself (file sources without
    `loop`); for demos, tests and batch imports. Live cameras never end by themselves.
    """
    if not config.cameras and config.cloud is None:
        log.error("%s: no [[cameras]] and no [cloud] configured; nothing to do", config.source)
        return 2
    spool = Spool(config.agent.data_dir)
    spool.recover(config.agent.data_dir / "clips")
    spool.close()

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    ctx = mp.get_context("spawn")
    children: dict[str, mp.process.BaseProcess] = {}
    for cam in config.cameras:
        proc = ctx.Process(target=camera_main, args=(config, cam), name=f"camera-{cam.name}")
        proc.start()
        children[f"camera {cam.name}"] = proc
        log.info("camera %s started (pid %d)", cam.name, proc.pid)
    cameras = dict(children)
    if config.cloud is not None:
        proc = ctx.Process(target=uploader_main, args=(config,), name="uploader")
        proc.start()
        children["uploader"] = proc
        log.info(
            "uploader started (pid %d): %s -> %s",
            proc.pid,
            config.cloud.bucket,
            config.cloud.search_lib,
        )
    log.info("agent running with %d camera(s); data in %s", len(cameras), config.agent.data_dir)
    reported: set[str] = set()
    while not stopping.wait(0.2):
        for name, proc in children.items():
            if proc.exitcode not in (None, 0) and name not in reported:
                reported.add(name)
                log.error("%s: process died (exit code %s)", name, proc.exitcode)
        if once and not any(p.is_alive() for p in cameras.values()):
            log.info("every source has ended")
            break

    log.info("stopping: finishing open clips")
    for proc in children.values():
        if proc.is_alive():
            proc.terminate()  # SIGTERM: the child finishes its event into a clip
    deadline = time.monotonic() + STOP_TIMEOUT
    for name, proc in children.items():
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            log.error("%s did not stop in %.0f s; killing it", name, STOP_TIMEOUT)
            proc.kill()
            proc.join()
    log.info("stopped")
    return 0
