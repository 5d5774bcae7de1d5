"""Spawn a test server as a child process and wait for the ``READY <port>`` line it prints.

Shared by the pytest-side wrappers of the real-process fakes: ``rtsp.py`` (the GStreamer RTSP
server), ``fake_ice.py`` and ``fake_oss.py``, all in this package.  Stdlib only, python >= 3.10,
like ``fake_ice.py`` and ``fake_oss.py``, which import it when run as scripts too (their
directory is then on ``sys.path``).

The child's contract: it prints ``READY <port>`` on stdout once it serves, and it exits when
its stdin reaches EOF.  We hold the write end of that pipe open and never write to it, so if
the test process dies, however abruptly, the kernel closes the pipe and the child goes too.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import IO, NoReturn, TypeVar

_READY = re.compile(r"READY (\d+)")


class ReadyProcessError(RuntimeError):
    """The child did not become ready; the message includes its stderr.

    ``status`` is its exit status if it exited first, ``-1`` if the deadline passed (or it
    would not exit after closing stdout), ``None`` if it printed something else; ``reason``
    says which, in words.  The child is dead by the time this is raised.
    """

    def __init__(self, name: str, reason: str, status: int | None, stderr: str) -> None:
        super().__init__(f"{name} {reason}; stderr:\n{stderr}")
        self.reason = reason
        self.status = status
        self.stderr = stderr


def free_tcp_port() -> int:
    """A loopback TCP port that is free right now (never listened on, so no TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_group_alive(pgid: int) -> bool:
    """True if any *living* (non-zombie) process is in process group ``pgid``.

    Zombies are ignored on purpose: they hold no sockets or files, and an orphaned child of the
    server (e.g. an ffmpeg relay) stays a zombie until PID 1 reaps it, which some container
    inits do only lazily (~1.5 s on the dev VM).  Linux-only (/proc).
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..." - comm may contain spaces/parens: split after it.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


class ReadyProcess:
    """One child process that prints ``READY <port>`` on stdout once it serves.

    Constructing it spawns the child; :meth:`wait_ready` blocks until the line arrives.
    :meth:`kill` / :meth:`terminate` end it (and, with ``own_group``, everything it started)
    and wait until it is gone; its stderr stays readable with :meth:`stderr_text` until
    :meth:`close`.
    """

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        own_group: bool = False,
    ) -> None:
        self.name = name
        self.own_group = own_group
        #: The port from the READY line, once :meth:`wait_ready` has returned.
        self.port: int | None = None
        #: True once :meth:`kill` / :meth:`terminate` has ended and reaped the child.
        self.stopped = False
        # stderr to a file, not a pipe: a chatty child (GStreamer warnings, moto's logs) must
        # never block on a full pipe that nobody reads.  Kept after the child ends, so a
        # failure can show it; released by close().
        self._stderr: IO[bytes] | None = tempfile.TemporaryFile(  # noqa: SIM115
            prefix=f"{name}-", suffix=".log"
        )
        try:
            self.proc = subprocess.Popen(
                list(cmd),
                # We hold the write end open: the child exits on EOF, i.e. when we die.
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=None if env is None else dict(env),
                bufsize=0,
                # Own process group (shared with whatever the child starts), so kill() can
                # take everything down at once.
                start_new_session=own_group,
            )
        except BaseException:
            self._stderr.close()
            raise

    @property
    def pid(self) -> int:
        """The child's PID (with ``own_group``, also its process group id)."""
        return self.proc.pid

    @property
    def running(self) -> bool:
        return not self.stopped and self.proc.poll() is None

    def wait_ready(self, deadline: float, port: int | None = None) -> int:
        """Block until ``READY <port>`` (``time.monotonic()`` ``deadline``); return the port.

        With ``port``, the line must name that port.  On any failure the child is killed and
        :class:`ReadyProcessError` raised.
        """
        stdout = self.proc.stdout
        assert stdout is not None
        buf = b""
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail("did not print READY in time", -1)
            ready, _, _ = select.select([stdout], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:  # EOF: the child exited (or is exiting) before becoming ready
                try:
                    status = self.proc.wait(timeout=max(remaining, 1.0))
                except subprocess.TimeoutExpired:
                    status = -1
                self._fail(f"exited with status {status} before READY", status)
            buf += chunk
        line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
        match = _READY.fullmatch(line)
        if match is None or (port is not None and int(match.group(1)) != port):
            expected = "READY <port>" if port is None else f"READY {port}"
            self._fail(f"printed {line!r} instead of {expected!r}", None)
        self.port = int(match.group(1))
        return self.port

    def _fail(self, reason: str, status: int | None) -> NoReturn:
        self.kill()
        raise ReadyProcessError(self.name, reason, status, self.stderr_text())

    def stderr_text(self) -> str:
        """Everything the child wrote to stderr so far ("" after :meth:`close`)."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL the child (with ``own_group``: its whole group) and wait until it is gone."""
        self._end(None)

    def terminate(self, timeout: float = 5.0) -> None:
        """SIGTERM the child, SIGKILL what is left after ``timeout`` s, wait until it is gone.

        SIGTERM goes to the child only (it stops what it started itself); the SIGKILL, with
        ``own_group``, to the whole group.
        """
        self._end(timeout)

    def _end(self, grace: float | None) -> None:
        if self.stopped:
            return
        proc = self.proc
        if grace is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        if self.own_group:
            # Whatever is left in the group (a hung server, a stray helper) goes now, and we
            # wait until the whole group is gone so callers can rely on "returned == dead".
            self._kill_group_and_wait()
        else:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        self.stopped = True

    def _kill_group_and_wait(self, timeout: float = 5.0) -> None:
        """SIGKILL the group and poll until no living member is left.

        The child leads the group and is reaped here; its orphans are left for init to reap.
        """
        proc = self.proc
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            proc.poll()  # reap the leader as soon as it is dead
            if proc.returncode is not None and not process_group_alive(proc.pid):
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)  # polling a condition with a deadline; the kernel needs a moment
        proc.wait()

    def close(self) -> None:
        """:meth:`kill` if still running, and release the stderr log."""
        self.kill()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


_Server = TypeVar("_Server", bound="ReadyServer")


class ReadyServer:
    """Base of a test server that runs as one :class:`ReadyProcess` on a loopback TCP port.

    ``port=None`` picks a free port on the first :meth:`start`; after that the port is kept, so
    a restart serves the same URL.  Subclasses give :meth:`_command` (which uses
    :attr:`port`) and may override the class attributes below.
    """

    #: The child's name: its stderr log's prefix, and in messages.
    name = "server"
    #: Run the child in its own process group (see :class:`ReadyProcess`).
    own_group = False
    #: The child's exit status when it cannot listen on its port.
    port_in_use_status = 3
    #: A fixed port (given, or kept for a restart) that is busy: poll until it is free (True)
    #: or fail at once.  A port we picked ourselves is replaced by a new free one instead.
    wait_for_busy_port = False

    def __init__(self, port: int | None = None) -> None:
        self._port = port
        #: The current or last server process; kept after it ends for its stderr log.
        self._server: ReadyProcess | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    @property
    def port(self) -> int:
        """The TCP port; fixed after the first :meth:`start`."""
        if self._port is None:
            raise RuntimeError("port not chosen yet: call start() first")
        return self._port

    @property
    def pid(self) -> int | None:
        """PID (with ``own_group``, also the process group id) of the server, or ``None``."""
        server = self._server
        return server.pid if server is not None and not server.stopped else None

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    def stderr_text(self) -> str:
        """Everything the current/last server process wrote to stderr (for diagnostics)."""
        return self._server.stderr_text() if self._server is not None else ""

    def start(self, timeout: float = 10.0) -> None:
        """Spawn the server and block until it prints ``READY <port>``.

        Raises :class:`ReadyProcessError` (its ``reason`` says why) if that does not happen
        within ``timeout`` s, port-in-use retries included.
        """
        if self.running:
            raise RuntimeError(f"{self.name} already running")
        picked = self._port is None
        deadline = time.monotonic() + timeout
        port_busy = False
        while True:
            if self._port is None:
                self._port = free_tcp_port()
            if self._server is not None:
                self._server.close()
            self._server = ReadyProcess(self.name, self._command(), own_group=self.own_group)
            try:
                self._server.wait_ready(deadline, port=self._port)
                return
            except ReadyProcessError as exc:
                busy = exc.status == self.port_in_use_status
                port_busy = port_busy or busy
                if busy and time.monotonic() < deadline and (picked or self.wait_for_busy_port):
                    if picked:  # lost a race for a port we picked: just pick another
                        self._port = None
                    else:  # fixed port / restart: poll (with a deadline) until it is free
                        time.sleep(0.05)
                    continue
                if not port_busy:
                    raise
                reason = f"port {self._port} stayed in use"
                raise ReadyProcessError(self.name, reason, exc.status, exc.stderr) from exc

    def kill(self) -> None:
        """SIGKILL the server (with ``own_group``: and all it started) at once."""
        if self._server is not None:
            self._server.kill()

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM, then SIGKILL after 5 s), waiting for it; idempotent."""
        if self._server is not None:
            self._server.terminate(timeout=5.0)

    def close(self) -> None:
        """Stop and release the stderr log."""
        self.stop()
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self: _Server) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
