"""Helpers for tests that run the agent as real processes and inspect what it left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agent.spool import ClipRow, Spool


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll `condition` until it is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def write_config(
    tmp_path: Path, url: Path | str, *, realtime: bool = True, name: str = "cam1", extra: str = ""
) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\ndevice_id = "test-gw"\n'
        f'[[cameras]]\nname = "{name}"\nurl = "{url}"\nrealtime = {str(realtime).lower()}\n' + extra
    )
    return config


def start(config: Path, *extra: str, log: Path | None = None) -> subprocess.Popen:
    """`ipc-agent run` in its own process group; output to a pipe, or to `log` to poll it."""
    out = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config), *extra],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def terminate(proc: subprocess.Popen, timeout: float = 60) -> int | None:
    """SIGTERM, as systemd stops it; its process group SIGKILLed if it is not gone in time."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def catalogue(data_dir: Path) -> list[ClipRow]:
    spool = Spool(data_dir)
    try:
        return list(spool.rows())
    finally:
        spool.close()


def assert_catalog_matches_disk(data_dir: Path) -> list[ClipRow]:
    """Every row's files exist; every file on disk belongs to a row; no partial files."""
    rows = catalogue(data_dir)
    expected = set()
    for row in rows:
        expected.add(data_dir / row.clip_path)
        expected.update(data_dir / k.path for k in row.keyframes)
    on_disk = {p for p in (data_dir / "clips").rglob("*") if p.is_file()}
    assert not [p for p in on_disk if p.name.endswith(".tmp")], "partial files left behind"
    assert on_disk == expected, f"disk and catalog disagree: {on_disk ^ expected}"
    return rows
