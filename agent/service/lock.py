"""One agent per data dir: `ipc-agent run` holds an exclusive lock on `data_dir/agent.lock`.

Two agents on one data dir would be two writers on one spool and one clips tree, and the
second would take over `status.sock`. The lock is `flock(2)`: the kernel releases it when the
holder dies, however it dies (SIGKILL included), so there is never a stale lock to clean up.
The holder writes its PID into the file, so a second `run` can name it. The file descriptor
is not inheritable, and the children are forked by multiprocessing's forkserver, itself started
by exec with only the descriptors it needs, so they never hold it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = "agent.lock"


class DataDirBusy(RuntimeError):
    """Another agent holds the data dir's lock; `pid` is its PID (None if it cannot be read)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(
            f"another agent ({who}) is already running on {path.parent} (it holds {path}); "
            "stop it first (systemctl stop ipc-agent), or give this one its own [agent] data_dir"
        )
        self.path = path
        self.pid = pid


def _pid_in(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _flock_holder(path: Path) -> int | None:
    """The PID /proc/locks gives for a FLOCK on `path` (the holder may not have written it yet)."""
    try:
        st = path.stat()
        with open("/proc/locks", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == dev:
            return int(fields[4]) if fields[4].isdigit() else None
    return None


def holder(data_dir: Path) -> int | None:
    """The PID of the agent holding `data_dir`'s lock, or None; takes no lock itself."""
    return _flock_holder(data_dir / LOCK_NAME)


@contextlib.contextmanager
def hold(data_dir: Path) -> Iterator[Path]:
    """Hold `data_dir`'s agent lock for the block; DataDirBusy if another agent holds it."""
    data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)  # as the spool makes it: private
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(path, _pid_in(path) or _flock_holder(path)) from None
        try:  # for the message a second agent prints; /proc/locks names us too
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk must not keep the agent from starting
            pass
        yield path
    finally:
        os.close(fd)  # releases the lock (the kernel does the same if we die)
