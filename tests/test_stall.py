"""Stalls seen on time and camera errors that name their cause, against the real GStreamer RTSP
server (frozen with SIGSTOP, killed, restarted) and real sockets."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from agent.capture.source import (
    AuthError,
    Source,
    SourceError,
    UnsupportedStream,
    open_input,
    retry_delay,
    stalled,
)
from agent.config import CameraConfig
from agent.service.status import fetch
from tests.support.agentproc import start, terminate, wait_for, write_config

TIMEOUT = 3.0


class Watched:
    """A Source consumed in a thread: when each packet arrived, and each state change."""

    def __init__(self, cam: CameraConfig) -> None:
        self.stop = threading.Event()
        self.source = Source(cam, self.stop)
        self.packets: list[float] = []
        self.states: list[tuple[float, str, str | None]] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Watched:
        self.reader.start()
        self.sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.reader.join(30)

    def _read(self) -> None:
        for conn in self.source.connections():
            for _ in conn.packets:
                with self.lock:
                    self.packets.append(time.monotonic())

    def _sample(self) -> None:
        last = None
        while not self.stop.wait(0.02):  # a 20 ms sampling of the state, not a synchronisation
            now = (self.source.state, self.source.last_error)
            if now != last:
                with self.lock:
                    self.states.append((time.monotonic(), *now))
                last = now

    def first(self, state: str, after: float = 0.0) -> tuple[float, str | None] | None:
        with self.lock:
            return next(((t, e) for t, s, e in self.states if s == state and t > after), None)


@contextlib.contextmanager
def frozen(server) -> Iterator[float]:
    """The server's process group stopped (SIGSTOP) as a hung camera is; the moment it was."""
    os.killpg(server.pid, signal.SIGSTOP)
    try:
        yield time.monotonic()
    finally:
        os.killpg(server.pid, signal.SIGCONT)


@pytest.mark.rtsp
def test_a_frozen_camera_is_stalled_within_timeout_plus_1_s_without_a_phantom_frame(
    rtsp_server, rtsp_videos
):
    server = rtsp_server({"/cam1": rtsp_videos["h264"]})
    cam = CameraConfig(name="cam1", url=server.url("/cam1"), timeout=TIMEOUT)
    with Watched(cam) as w:
        wait_for(lambda: len(w.packets) > 50, 30, "the stream to flow")
        with frozen(server) as at:
            wait_for(lambda: w.first("reconnecting", at), 30, "a reconnect attempt to fail")
            with w.lock:
                last = max(t for t in w.packets if t < at + 0.5)
                late = [round(t - last, 2) for t in w.packets if t > last]
            stall = w.first("stalled", at)
            assert stall is not None, w.states
            assert stall[0] - last <= TIMEOUT + 1, (stall[0] - last, w.states)
            assert stall[1] == f"no packet for {TIMEOUT:g} s"
            assert late == [], f"packets handed over while the camera was frozen: {late}"
            _, error = w.first("reconnecting", at)
            assert error.endswith(f"no answer within {TIMEOUT:g} s (timed out)"), error
            assert "Invalid data" not in error
        thawed = time.monotonic()
        wait_for(lambda: w.first("streaming", thawed), 30, "the stream to come back")
        back, _ = w.first("streaming", thawed)
        assert back - thawed < 10, f"back {back - thawed:.1f} s after the camera"


@pytest.mark.rtsp
def test_a_camera_that_comes_back_streams_within_10_s(rtsp_server, rtsp_videos):
    server = rtsp_server({"/cam1": rtsp_videos["h264"]})
    cam = CameraConfig(name="cam1", url=server.url("/cam1"), timeout=TIMEOUT)
    with Watched(cam) as w:
        wait_for(lambda: len(w.packets) > 10, 30, "the stream to flow")
        retries = Retries()
        logging.getLogger("agent.capture.source").addHandler(retries)
        try:
            server.kill()
            # Down long enough for the backoff to reach its cap (0.5, 1, 2, 4, 5 s ...).
            wait_for(lambda: len(retries.delays) >= 6, 30, "six failed reconnects")
        finally:
            logging.getLogger("agent.capture.source").removeHandler(retries)
        assert "connection refused" in w.source.last_error, w.states
        assert retries.delays[-1] >= 0.75 * 5.0, retries.delays
        server.restart()
        restarted = time.monotonic()
        wait_for(lambda: w.first("streaming", restarted), 30, "the stream to come back")
        back, _ = w.first("streaming", restarted)
    assert back - restarted < 10, f"streaming {back - restarted:.1f} s after the camera came back"


class Retries(logging.Handler):
    """The delays the source logs ("...; retrying in 2.0 s")."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = re.search(r"retrying in ([\d.]+) s", record.getMessage())
        if m:
            self.delays.append(float(m[1]))


def test_reconnect_delays_start_quick_and_are_capped():
    class Recording(threading.Event):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.delays: list[float] = []
            self.n = n

        def wait(self, timeout=None):
            self.delays.append(timeout)
            if len(self.delays) >= self.n:
                self.set()
            return self.is_set()

    port = _closed_port()
    for cap in (5.0, 10.0):
        stop = Recording(10)
        url = f"rtsp://127.0.0.1:{port}/x"
        source = Source(CameraConfig(name="c", url=url, reconnect_max=cap), stop)
        assert list(source.connections()) == []
        d = stop.delays
        assert 0.3 <= d[0] <= 0.5 and d[1] <= 1.0 and d[2] <= 2.0, d
        assert max(d) <= cap and max(d) >= 0.75 * cap, d
        assert "connection refused" in source.last_error


def test_pure_rules():
    assert not stalled(9.9, 10.0, False) and stalled(10.0, 10.0, False)
    assert not stalled(30.0, 10.0, True)  # the first packet waits for FFmpeg's probing
    assert all(3.75 <= retry_delay(5.0) <= 5.0 for _ in range(100))


# -- every error names its cause ----------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _tcp_server(answer: bytes | None) -> Iterator[int]:
    """A TCP port that accepts and then says nothing (`answer` None) or answers garbage."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    conns: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                conns.append(conn)
                if answer is not None:
                    conn.recv(4096)
                    conn.sendall(answer)
                    conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for conn in conns:
            conn.close()


def test_refused_dns_timeout_and_corrupt_answers_say_so():
    with pytest.raises(SourceError, match=r"connection refused"):
        open_input(f"rtsp://u:secret@127.0.0.1:{_closed_port()}/x", timeout=2)
    with pytest.raises(
        SourceError, match=r"cannot resolve the host name 'camera\.invalid' \(DNS\)"
    ):
        open_input("rtsp://camera.invalid/x", timeout=2)
    with _tcp_server(None) as port, pytest.raises(SourceError) as err:
        open_input(f"rtsp://u:secret@127.0.0.1:{port}/x", timeout=1.5)
    assert str(err.value).endswith("no answer within 1.5 s (timed out)")
    assert "secret" not in str(err.value)
    with _tcp_server(b"HELLO, this is not RTSP\r\n\r\n") as port, pytest.raises(SourceError) as err:
        open_input(f"rtsp://127.0.0.1:{port}/x", timeout=5)
    assert "corrupt data" in str(err.value) or "cannot open" in str(err.value), str(err.value)


@pytest.mark.rtsp
def test_401_and_404_say_so(rtsp_server, rtsp_videos):
    server = rtsp_server({"/cam1": rtsp_videos["h264"]}, user="admin", password="right-one")
    with pytest.raises(AuthError, match=r"rejected the credentials \(401\)"):
        open_input(server.url("/cam1", user="admin", password="wrong"), timeout=5)
    with pytest.raises(SourceError, match=r"no such stream \(404\)"):
        open_input(server.url("/nope"), timeout=5)


def test_an_unsupported_codec_says_which(tmp_path):
    import av
    import numpy as np

    path = tmp_path / "mjpeg.avi"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame.reformat(format="yuvj420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(UnsupportedStream, match=r"video codec 'mjpeg' is not supported"):
        open_input(str(path))


@pytest.mark.rtsp
def test_the_daemon_status_shows_a_frozen_camera_stalled_on_time(
    rtsp_server, rtsp_videos, tmp_path
):
    """The operator's view: `status` of the real daemon while its camera is frozen."""
    server = rtsp_server({"/cam1": rtsp_videos["h264"]})
    config = write_config(tmp_path, server.url("/cam1"), extra="")
    config.write_text(
        config.read_text().replace("realtime = true\n", "realtime = true\ntimeout = 3\n")
    )
    data = tmp_path / "data"
    proc = start(config, log=tmp_path / "agent.log")

    def camera() -> dict:
        model = fetch(data) or {}
        return (model.get("cameras") or [{}])[0]

    try:
        wait_for(lambda: camera().get("state") == "streaming", 60, "the camera to stream")
        seen: list[tuple[float, str, float | None, str | None]] = []
        with frozen(server) as at:

            def observe() -> bool:
                c = camera()
                seen.append(
                    (
                        time.monotonic() - at,
                        c.get("state"),
                        c.get("last_frame_age_s"),
                        c.get("last_error"),
                    )
                )
                return c.get("state") == "reconnecting"

            wait_for(observe, 30, "a reconnect attempt to fail")
    finally:
        terminate(proc)
    streaming_late = [s for s in seen if s[1] == "streaming" and (s[2] or 0) > TIMEOUT + 1]
    assert not streaming_late, f"status said streaming with no frame for {streaming_late[-1][2]} s"
    stalled_seen = [s for s in seen if s[1] == "stalled"]
    assert stalled_seen, seen
    first = stalled_seen[0]
    assert first[2] is not None and first[2] <= TIMEOUT + 1.3, first  # + one status look
    assert first[3] == f"no packet for {TIMEOUT:g} s"
    assert seen[-1][3].endswith(f"no answer within {TIMEOUT:g} s (timed out)"), seen[-1]
