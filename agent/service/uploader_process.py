"""The uploader's child process, kept up: started when due, killed when hung, restarted with
backoff, replaced when its settings change (agent/service/supervisor.py runs the loop)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from agent.config import Config
from agent.service.children import uploader_main
from agent.service.model import Run
from agent.service.supervised import (
    Child,
    ask_to_stop,
    describe_exit,
    reports,
    restart_later,
    stopping,
)

log = logging.getLogger(__name__)

UPLOADER_HANG = 120.0  # s without a heartbeat before the uploader counts as hung


def uploader_for(config: Config) -> Child | None:
    """The uploader a config asks for (not started); None without [cloud]."""
    if config.cloud is None:
        return None
    return Child("uploader", uploader_main, (config,), UPLOADER_HANG)


def settings(child: Child) -> Any:
    """What the uploader runs with: a change restarts it."""
    config = child.args[0]
    return (config.agent, config.cloud, config.upload)


class UploaderProcess:
    """The uploader's process, if the config has [cloud]: `child` is None otherwise."""

    def __init__(self, ctx: Any, config: Config, stopping: threading.Event) -> None:
        self.ctx = ctx  # multiprocessing's forkserver context
        self.stopping = stopping  # the supervisor is shutting down: start nothing
        self.child = uploader_for(config)

    def start(self) -> None:
        """Start the uploader's process."""
        child = self.child
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

    def collect(self, child: Child) -> None:
        """Take the uploader's reports: its last snapshot."""
        for _, _, at, payload in reports(child):
            child.latest, child.latest_at = payload, at

    def check(self, now: float) -> None:
        """One look at the uploader: start it when due, notice death and hangs, restart."""
        child = self.child
        if child is None:
            return
        self.collect(child)
        proc = child.proc
        if proc is None:
            if (
                child.restart_at is not None
                and now >= child.restart_at
                and not self.stopping.is_set()
            ):
                self.start()
            return
        if proc.is_alive():
            if stopping(child, now):
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
                self.child = child.replacement
                child.replacement.restart_at = now
            else:
                self.child = None
            return
        hung, child.hung = child.hung, None
        if code == 0 and hung is None:
            log.info("%s finished (exit code 0)", child.name)
            child.restart_at = None
            return
        restart_later(child, child.name, hung or describe_exit(code), now)

    def apply(self, config: Config) -> None:
        """Bring the uploader in line with `config`: stop, add or restart it as it changed."""
        old, new = self.child, uploader_for(config)
        if new is None and old is not None:
            log.info("uploader removed from the config; stopping it")
            old.restart_at = None
            ask_to_stop(old)
            if old.proc is None:
                self.child = None
        elif new is not None and old is None:
            log.info("uploader added to the config")
            self.child = new
        elif new is not None and settings(old) != settings(new):
            log.info("uploader: settings changed; restarting it")
            if old.proc is None:
                self.child = new
            else:
                old.replacement = new
                new.restart_at = None
                ask_to_stop(old)

    def for_status(self) -> Run | None:
        """The uploader as the status model takes it; None without one."""
        child = self.child
        if child is None:
            return None
        alive = child.proc is not None and child.proc.is_alive()
        return Run(
            child.name,
            pid=child.pid if alive else None,
            restarts=child.restarts,
            last_restart_reason=child.last_reason,
            snapshot=child.latest,
        )
