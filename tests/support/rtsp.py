"""Pytest-side wrapper around ``tests/support/rtsp_server.py``, the real GStreamer RTSP test server.

The server itself must run under the *system* python (``/usr/bin/python3``), which has the
GObject-introspection bindings for GStreamer; the venv running the tests does not.  This module
only spawns it, waits for its ``READY <port>`` line, and tears it down (gracefully or with
SIGKILL for "camera dies mid-stream" tests).  It also knows how to generate small synthetic
H.264/H.265 MP4 files with PyAV so tests need no binary fixtures.

Measured on the dev machine (GStreamer 1.22, ffmpeg 5.1, PyAV 18): READY ~0.15 s after spawn,
kill() ~0.02 s, restart() ~0.15 s.  ``av.open()`` returns after (wait for the next keyframe of
the live feed, <= one GOP, only if the mount is idle) + (FFmpeg probing ~27 frames: ~1.1 s at
25 fps, ~1.8 s at 15 fps).  Per client, pts start near 0; the first packet has ``pts=None``; a
client joining a mount that is already playing starts mid-GOP (first packet not a keyframe).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from .ready_process import ReadyProcessError, ReadyServer
from .ready_process import process_group_alive as process_group_alive  # re-exported for tests

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
CODECS = ("h264", "h265")
#: Exit status of rtsp_server.py when it cannot listen on the requested port.
_EXIT_PORT_IN_USE = 3

#: A mount is a file, or ``(file, codec)`` to override the server-wide codec for that mount.
MountSpec = Path | str | tuple[Path | str, str]

_PROBE = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("udpsrc", "tsdemux", "h264parse", "h265parse", "rtph264pay", "rtph265pay")
           if Gst.ElementFactory.find(e) is None]
print("missing GStreamer elements: " + " ".join(missing) if missing else "OK")
"""


class RtspServerError(RuntimeError):
    """The RTSP test server could not be started (message includes its stderr)."""


@functools.lru_cache(maxsize=1)
def rtsp_available() -> str | None:
    """``None`` if the RTSP test server can run here, else why not (for ``pytest.skip``).

    Tests skip *only* through this; ``scripts/test.sh`` installs the Debian packages
    (gstreamer1.0-rtsp, gir1.2-gst-rtsp-server-1.0, plugins base/good/bad, python3-gi,
    ffmpeg), so in CI the RTSP tests must run.
    """
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (the GStreamer server needs the system python)"
    if shutil.which("ffmpeg") is None:
        return "ffmpeg not installed (it paces and loops the test files)"
    try:
        res = subprocess.run(
            [SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot probe GStreamer with {SYSTEM_PYTHON}: {exc}"
    out = res.stdout.strip()
    if res.returncode != 0:
        err = res.stderr.strip().splitlines()
        return f"{SYSTEM_PYTHON} lacks gi/Gst/GstRtspServer: {err[-1] if err else res.returncode}"
    if out != "OK":
        return out
    return None


class RtspServer(ReadyServer):
    """One ``rtsp_server.py`` process serving files as live looping RTSP mounts.

    ``mounts`` maps an RTSP path (``"/cam1"``) to an MP4 file, or to ``(file, codec)``.
    With ``user``/``password`` every mount requires auth (``auth="digest"`` or ``"basic"``);
    anonymous or wrong credentials get 401.  ``port=None`` picks a free port on first start;
    :meth:`restart` always reuses the same port so clients can reconnect to the same URL.

    The server runs in its own process group (together with its ffmpeg relays), so
    :meth:`kill` can take everything down at once like a camera losing power; on :meth:`stop`
    (SIGTERM) it stops its relays itself, and whatever is left after 5 s is killed.
    """

    name = "rtsp_server"
    own_group = True
    port_in_use_status = _EXIT_PORT_IN_USE
    wait_for_busy_port = True

    def __init__(
        self,
        mounts: Mapping[str, MountSpec],
        *,
        user: str | None = None,
        password: str | None = None,
        port: int | None = None,
        codec: str = "h264",
        auth: str = "digest",
    ) -> None:
        if not mounts:
            raise ValueError("need at least one mount")
        if (user is None) != (password is None):
            raise ValueError("user and password go together")
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
        if auth not in ("digest", "basic"):
            raise ValueError(f"auth must be 'digest' or 'basic', got {auth!r}")
        self._mounts: dict[str, tuple[Path, str]] = {}
        for path, spec in mounts.items():
            file, mcodec = spec if isinstance(spec, tuple) else (spec, codec)
            if mcodec not in CODECS:
                raise ValueError(f"codec for {path} must be one of {CODECS}, got {mcodec!r}")
            self._mounts["/" + path.lstrip("/")] = (Path(file), mcodec)
        self.user = user
        self.password = password
        self.auth = auth
        super().__init__(port)

    # -- info --------------------------------------------------------------------------

    def url(
        self,
        mount: str,
        *,
        user: str | None = None,
        password: str | None = None,
        anonymous: bool = False,
    ) -> str:
        """``rtsp://[user:pass@]127.0.0.1:PORT/mount``.

        Credentials default to the server's own (so the URL just works); pass ``user`` /
        ``password`` to override (e.g. a wrong password) or ``anonymous=True`` for none.
        """
        if user is None and password is None and not anonymous:
            user, password = self.user, self.password
        cred = ""
        if user is not None:
            cred = quote(user, safe="")
            if password is not None:
                cred += ":" + quote(password, safe="")
            cred += "@"
        return f"rtsp://{cred}127.0.0.1:{self.port}/{mount.lstrip('/')}"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 15) -> None:
        """Spawn the server and block until it prints ``READY <port>`` (or raise).

        If the port is briefly unavailable (e.g. another process still holds it), retry until
        ``timeout``; a port we picked ourselves is replaced by a new free one instead.
        """
        if self.running:
            raise RuntimeError("RTSP server already running")
        reason = rtsp_available()
        if reason is not None:
            raise RtspServerError(f"RTSP test server unavailable: {reason}")
        for file, _ in self._mounts.values():
            if not file.is_file():
                raise FileNotFoundError(file)
        try:
            super().start(timeout)
        except ReadyProcessError as exc:
            raise RtspServerError(
                f"RTSP test server did not become ready within {timeout:g}s ({exc.reason}); "
                f"stderr:\n{self.stderr_text()}"
            ) from exc

    def _command(self) -> list[str]:
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        if self.user is not None and self.password is not None:
            cmd += ["--user", self.user, "--password", self.password, "--auth", self.auth]
        for path, (file, codec) in self._mounts.items():
            cmd += ["--mount", f"{path}={file}:{codec}"]
        return cmd

    def restart(self, timeout: float = 15) -> None:
        """Stop if running, then start again on the *same* port (clients reuse their URL).

        GSocket binds with SO_REUSEADDR, so connections of the old server lingering in
        TIME_WAIT/FIN_WAIT do not block the new listener.
        """
        self.stop()
        self.start(timeout=timeout)


def make_test_video(
    path: Path,
    *,
    codec: str = "h264",
    seconds: float = 10,
    fps: int = 15,
    size: tuple[int, int] = (320, 240),
    gop: int = 30,
) -> Path:
    """Write a synthetic MP4 (moving gradient) suitable as an RTSP source; returns ``path``.

    Fixed GOP, no B-frames and a single slice per frame, like a simple IP camera: the relayed
    stream then has strictly increasing pts == dts and a keyframe every ``gop`` frames.
    """
    import av  # venv-only; keep the module importable without it
    import numpy as np

    if codec not in CODECS:
        raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
    width, height = size
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"
    with av.open(str(path), "w") as out:
        if codec == "h264":
            stream = out.add_stream("libx264", rate=fps)
            stream.options = {
                "x264-params": params + ":sliced-threads=0",
                "threads": "1",
                "preset": "veryfast",
            }
        else:
            stream = out.add_stream("libx265", rate=fps)
            stream.options = {
                "x265-params": params + ":log-level=error:frame-threads=1:pools=none",
                "preset": "veryfast",
            }
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(int(seconds * fps)):
            rgb = np.stack(
                [(xx + 4 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (3 * i) % 256)], axis=-1
            ).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
