"""One agent per data dir: `ipc-agent run` holds an flock on data_dir/agent.lock. Real agents,
real processes: a second one exits 2 naming the first, `status` keeps talking to the first,
and a SIGKILLed holder's lock is released by the kernel.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.agentproc import start, terminate, wait_for, write_config

UNREACHABLE = "rtsp://127.0.0.1:9/stream"  # a camera that refuses: the agent runs, needs no media


def daemon_pid(config: Path) -> int | None:
    """The PID `ipc-agent status` reports, or None while no daemon answers."""
    out = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)["daemon"]["pid"]


def wait_answering(config: Path, proc: subprocess.Popen, log: Path) -> None:
    """Until `status` reports `proc` as the daemon; a failure shows the agent's log."""
    try:
        wait_for(lambda: daemon_pid(config) == proc.pid, 60, f"agent {proc.pid} to answer status")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its log:\n{log.read_text()[-4000:]}") from None


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        terminate(proc)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind


def test_a_second_agent_on_one_data_dir_exits_2_naming_the_first(tmp_path):
    config = write_config(tmp_path, UNREACHABLE)
    config.chmod(0o600)
    lock = tmp_path / "data" / "agent.lock"
    first = start(config, log=tmp_path / "first.log")
    try:
        wait_answering(config, first, tmp_path / "first.log")
        assert lock.read_text().strip() == str(first.pid)
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o750  # made by the lock: private

        second = start(config, log=tmp_path / "second.log")
        try:
            assert second.wait(60) == 2
        finally:
            kill_group(second)
        said = (tmp_path / "second.log").read_text()
        assert "Traceback" not in said
        assert (
            f"ipc-agent run: another agent (pid {first.pid}) is already running on "
            f"{tmp_path / 'data'}"
        ) in said
        assert "camera cam1 started" not in said  # it never started anything

        # The first agent runs on, and status still reaches it (the second never bound
        # status.sock, nor removed it on its way out).
        assert first.poll() is None
        assert daemon_pid(config) == first.pid
        assert lock.read_text().strip() == str(first.pid)

        # SIGKILL of the holder alone: the kernel releases the lock (its camera processes,
        # spawned by fork + exec, never held the descriptor), and a new agent starts.
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
        third = start(config, log=tmp_path / "third.log")
        try:
            wait_answering(config, third, tmp_path / "third.log")
            assert lock.read_text().strip() == str(third.pid)
            assert third.poll() is None
        finally:
            assert terminate(third) == 0
            kill_group(third)
    finally:
        kill_group(first)


def test_agents_on_different_data_dirs_run_side_by_side(tmp_path):
    configs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        configs.append(write_config(folder, UNREACHABLE))
        configs[-1].chmod(0o600)
    procs = [start(c, log=c.parent / "agent.log") for c in configs]
    try:
        for config, proc in zip(configs, procs):
            wait_answering(config, proc, config.parent / "agent.log")
        assert all(p.poll() is None for p in procs)
    finally:
        for proc in procs:
            kill_group(proc)


def test_the_holder_is_named_even_before_it_wrote_its_pid(tmp_path):
    """The PID in agent.lock may be missing (a full disk) or stale: the kernel's lock table
    (/proc/locks) names the holder, to a second `run` and to `status`."""
    config = write_config(tmp_path, UNREACHABLE)
    config.chmod(0o600)
    lock = tmp_path / "data" / "agent.lock"
    lock.parent.mkdir()
    lock.write_text("not a pid\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        out = subprocess.run(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, out.stderr
        assert f"another agent (pid {holder.pid}) is already running" in out.stderr
        assert "Traceback" not in out.stderr
        # status: no answer on status.sock, but it knows who holds the data dir
        out = subprocess.run(
            [sys.executable, "-m", "agent", "status", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 3, out.stderr
        assert "DAEMON NOT RUNNING" in out.stdout
        assert f"an agent (pid {holder.pid}) holds {tmp_path / 'data'} but did not answer" in (
            out.stderr
        )
    finally:
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()
