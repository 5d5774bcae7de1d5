#!/usr/bin/python3
"""Real RTSP test server: serves MP4 files as live, endlessly looping camera streams.

Run with the SYSTEM python (it has the GObject-introspection bindings; the venv does not)::

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 \\
        [--user U --password P [--auth digest]] \\
        --mount /cam1=clip.mp4[:h264|h265] [--mount /cam2=other.mp4:h265]

Design (why it looks like this):

* Pacing + looping is done by one ``ffmpeg -re -stream_loop -1 -c copy`` per mount, muxing
  MPEG-TS into a localhost UDP port.  ffmpeg already rewrites timestamps across loop boundaries
  so they keep increasing, and ``-re`` paces in real time.  Doing the same purely in GStreamer
  needs segment seeks inside the RTSP media, which is fiddly and was not more reliable.
* The relays are started once per *server* and run for its whole life, so the stream behaves
  like a real camera: a client that connects later joins at the current position, and every
  client of a mount sees the same stream.  When nobody is watching, ffmpeg just sends UDP into
  the void (unconnected UDP socket, so "port unreachable" is never reported back to it).
* The RTSP media is ``udpsrc ! tsdemux ! hXXXparse ! rtphXXXpay``, shared between clients
  (``set_shared(True)``), so several clients and reconnects work.  ``config-interval=0``:
  with ``-1`` rtph264pay splits multi-slice keyframes into two access units with the same
  timestamp (clients see "non monotonically increasing dts").  The parameter sets still reach
  the client: in the SDP (sprop-parameter-sets) and in-band, because ffmpeg's annex-B
  conversion puts SPS/PPS in front of every keyframe.
* Readiness: once the server socket is listening we print exactly ``READY <port>`` on stdout.
* Lifetime: SIGTERM/SIGINT stop the main loop and terminate the ffmpeg children.  The children
  get ``PR_SET_PDEATHSIG`` so even a SIGKILLed server does not leave orphan ffmpegs, and they
  share the server's process group so the wrapper can ``killpg`` everything at once.  If our
  stdin is a pipe and reaches EOF (the test process died), we shut down as well.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

CODECS = ("h264", "h265")
PR_SET_PDEATHSIG = 1
ROLE = "user"


@dataclass(frozen=True)
class Mount:
    """One ``--mount`` argument: RTSP path, source file and its video codec."""

    path: str
    file: str
    codec: str


def parse_mount(spec: str) -> Mount:
    """Parse ``/path=FILE[:codec]`` (the codec suffix defaults to h264)."""
    if "=" not in spec:
        raise argparse.ArgumentTypeError(f"mount must be /path=FILE[:codec], got {spec!r}")
    path, file = spec.split("=", 1)
    codec = "h264"
    head, sep, tail = file.rpartition(":")
    if sep and tail.lower() in CODECS:
        file, codec = head, tail.lower()
    if not path.startswith("/"):
        path = "/" + path
    if not os.path.isfile(file):
        raise argparse.ArgumentTypeError(f"mount file does not exist: {file}")
    return Mount(path=path, file=os.path.abspath(file), codec=codec)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def set_parent_death_signal(sig: int) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def _set_pdeathsig_kill() -> None:
    set_parent_death_signal(signal.SIGKILL)


def start_relay(mount: Mount, timeout: float = 10.0) -> tuple[subprocess.Popen[bytes], int]:
    """Start ffmpeg looping ``mount.file`` in real time as MPEG-TS to a free localhost UDP port.

    We bind the UDP port ourselves first (so nobody else can take it while ffmpeg starts) and
    wait for the first datagram: that way READY means "every stream is really flowing", and a
    broken input file fails the start with ffmpeg's error instead of a silent empty mount.
    The socket is closed again before the RTSP media's udpsrc binds the port on demand.
    Returns the ffmpeg process and the UDP port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        udp_port = sock.getsockname()[1]
        cmd = [
            "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
            "-re", "-stream_loop", "-1", "-i", mount.file,
            "-map", "0:v:0", "-c", "copy",
            # Send packets as soon as they are due (no 0.7 s mux buffering in the TS muxer).
            "-muxdelay", "0", "-muxpreload", "0", "-flush_packets", "1",
            "-f", "mpegts", f"udp://127.0.0.1:{udp_port}?pkt_size=1316",
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # Runs in the child before exec: die with the server, even if it is SIGKILLed.
            # Safe here: relays are started before Gst.init(), while we are single-threaded.
            preexec_fn=_set_pdeathsig_kill,
        )
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if proc.poll() is not None or remaining <= 0:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"ffmpeg relay for {mount.path} ({mount.file}) produced no data")
            ready, _, _ = select.select([sock], [], [], min(remaining, 0.2))
            if ready:
                sock.recv(65536)
                return proc, udp_port


def launch_line(codec: str, udp_port: int) -> str:
    """GStreamer launch line relaying the UDP MPEG-TS feed as RTP (payloader named pay0)."""
    parse, pay = ("h264parse", "rtph264pay") if codec == "h264" else ("h265parse", "rtph265pay")
    return (
        f"( udpsrc port={udp_port} address=127.0.0.1 do-timestamp=true buffer-size=2097152 "
        f'caps="video/mpegts,systemstream=(boolean)true" '
        f"! tsdemux ignore-pcr=true latency=0 "
        f"! {parse} ! {pay} name=pay0 pt=96 config-interval=0 )"
    )


def build_server(args: argparse.Namespace, relays: dict[str, int]) -> GstRtspServer.RTSPServer:
    """RTSP server with one shared media factory per mount, optionally behind auth."""
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()

    for mount in args.mount:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(mount.codec, relays[mount.path]))
        factory.set_shared(True)
        # Default protocols (UDP, UDP multicast, TCP interleaved) suit every client we use.
        if args.user is not None:
            factory.add_role_from_structure(
                Gst.Structure.new_from_string(
                    f"{ROLE}, media.factory.access=(boolean)true, "
                    "media.factory.construct=(boolean)true"
                )
            )
        mounts.add_factory(mount.path, factory)

    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
        if args.auth == "digest":
            auth.add_digest(args.user, args.password, token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
        # No default token: anonymous / wrong credentials get 401.
        server.set_auth(auth)
    return server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True, help="TCP port to listen on (not 0)")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--auth", choices=("digest", "basic"), default="digest")
    p.add_argument(
        "--mount", type=parse_mount, action="append", required=True,
        help="/path=FILE.mp4[:h264|h265]; repeatable",
    )  # fmt: skip
    args = p.parse_args(argv)
    if (args.user is None) != (args.password is None):
        p.error("--user and --password go together")
    if args.port <= 0:
        p.error("--port must be a real port (gst-rtsp-server does not report port 0 reliably)")
    if len({m.path for m in args.mount}) != len(args.mount):
        p.error("duplicate mount path")
    return args


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=3)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> int:
    """Start relays, serve until SIGTERM/SIGINT/SIGHUP or stdin EOF; exit 3 if the port is taken."""
    args = parse_args(argv)
    children: list[subprocess.Popen[bytes]] = []
    try:
        relays: dict[str, int] = {}
        for mount in args.mount:
            proc, udp_port = start_relay(mount)
            children.append(proc)
            relays[mount.path] = udp_port

        Gst.init(None)
        loop = GLib.MainLoop()

        def shutdown(*_: object) -> bool:
            loop.quit()
            return GLib.SOURCE_REMOVE

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, shutdown)

        server = build_server(args, relays)
        # attach() binds + listens (GSocket sets SO_REUSEADDR); it returns 0 on failure
        # (e.g. port in use) rather than raising, and get_bound_port() is -1 then.
        try:
            attached = server.attach(None)
        except GLib.Error:
            attached = 0
        bound = server.get_bound_port()
        if not attached or bound != args.port:
            print(f"rtsp_server: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
            return 3

        def child_watch() -> bool:
            # A dead relay means a dead mount; exit loudly instead of serving nothing.
            for child in children:
                if child.poll() is not None:
                    print(
                        f"rtsp_server: ffmpeg relay exited with {child.returncode}", file=sys.stderr
                    )
                    loop.quit()
                    return GLib.SOURCE_REMOVE
            return GLib.SOURCE_CONTINUE

        GLib.timeout_add(500, child_watch)

        if stat.S_ISFIFO(os.fstat(0).st_mode):
            # The wrapper keeps our stdin pipe open; EOF means the test process is gone.
            def on_stdin(fd: int, cond: GLib.IOCondition) -> bool:
                data = os.read(fd, 4096) if cond & GLib.IOCondition.IN else b""
                if not data:
                    loop.quit()
                    return GLib.SOURCE_REMOVE
                return GLib.SOURCE_CONTINUE

            GLib.unix_fd_add_full(
                GLib.PRIORITY_DEFAULT, 0,
                GLib.IOCondition.IN | GLib.IOCondition.HUP | GLib.IOCondition.ERR,
                on_stdin,
            )  # fmt: skip

        print(f"READY {bound}", flush=True)
        loop.run()
        return 0
    except RuntimeError as exc:
        print(f"rtsp_server: {exc}", file=sys.stderr)
        return 2
    finally:
        _stop_children(children)


if __name__ == "__main__":
    sys.exit(main())
