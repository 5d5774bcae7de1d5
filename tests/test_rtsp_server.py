"""Tests of the RTSP test harness itself, against the real GStreamer server.

Everything else that talks RTSP trusts this harness, so these pin down its behaviour: real-time
looping streams with increasing timestamps, H.264 and H.265, auth, a server that dies
mid-stream (the client's demux loop must end promptly, not hang), and restart on the same port.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import av
import av.error
import pytest

from tests.support.rtsp import RtspServer, make_test_video, process_group_alive

pytestmark = pytest.mark.rtsp

#: (open timeout, read timeout) in seconds for PyAV; the read timeout bounds every hang below.
TIMEOUT = (10.0, 5.0)
MakeServer = Callable[..., RtspServer]


def open_rtsp(url: str) -> av.container.InputContainer:
    return av.open(url, options={"rtsp_transport": "tcp"}, timeout=TIMEOUT)


def read_stream(url: str, *, seconds: float, codec: str) -> list[av.Packet]:
    """Demux ``seconds`` of stream time from ``url``; check codec, timestamps and decodability."""
    packets: list[av.Packet] = []
    decoded = 0
    with open_rtsp(url) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == codec
        ctx = stream.codec_context
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            packets.append(packet)
            if any(p.is_keyframe for p in packets):  # joined mid-GOP: decode from a keyframe
                decoded += len(ctx.decode(packet))
            stamped = [p.pts for p in packets if p.pts is not None]
            if len(stamped) > 1 and (stamped[-1] - stamped[0]) * stream.time_base >= seconds:
                break
        else:
            pytest.fail(f"stream ended after {len(packets)} packets")
    assert decoded > 0, "no frame decoded"
    stamped = [p.pts for p in packets if p.pts is not None]
    assert all(b > a for a, b in pairwise(stamped)), "pts not strictly increasing"
    assert any(p.is_keyframe for p in packets)
    return packets


def test_h264_stream_loops_with_increasing_timestamps(
    rtsp_server: MakeServer, tmp_path: Path
) -> None:
    """A 1.2 s clip read for 3 s of stream time: at least two loop boundaries, no pts glitch."""
    fps = 25
    clip = make_test_video(tmp_path / "short.mp4", seconds=1.2, fps=fps, gop=10)
    server = rtsp_server({"/cam1": clip})
    packets = read_stream(server.url("/cam1"), seconds=3, codec="h264")
    # One packet per frame, pts in a 90 kHz clock, evenly spaced - across the loops too.
    stamped = [p.pts for p in packets if p.pts is not None]
    assert {b - a for a, b in pairwise(stamped)} == {90000 // fps}


def test_h265_stream(rtsp_server: MakeServer, rtsp_videos: dict[str, Path]) -> None:
    server = rtsp_server({"/cam2": rtsp_videos["h265"]}, codec="h265")
    read_stream(server.url("/cam2"), seconds=1.5, codec="hevc")


def test_two_mounts_and_concurrent_clients(
    rtsp_server: MakeServer, rtsp_videos: dict[str, Path]
) -> None:
    """One server, mixed codecs; a second client on a shared mount joins the live stream."""
    server = rtsp_server({"/a": rtsp_videos["h264"], "/b": (rtsp_videos["h265"], "h265")})
    with open_rtsp(server.url("/a")) as first:
        next(first.demux(video=0))
        # The mount is already live: the second client joins without waiting for a new preroll.
        read_stream(server.url("/a"), seconds=1, codec="h264")
        assert next(first.demux(video=0)) is not None
    read_stream(server.url("/b"), seconds=1, codec="hevc")


@pytest.mark.parametrize("auth", ["digest", "basic"])
def test_auth(rtsp_server: MakeServer, rtsp_videos: dict[str, Path], auth: str) -> None:
    server = rtsp_server(
        {"/cam1": rtsp_videos["h264"]}, user="admin", password="s3cr:t@x", auth=auth
    )
    with pytest.raises(av.error.HTTPUnauthorizedError):
        open_rtsp(server.url("/cam1", password="wrong"))
    with pytest.raises(av.error.HTTPUnauthorizedError):
        open_rtsp(server.url("/cam1", anonymous=True))
    with open_rtsp(server.url("/cam1")) as container:  # right credentials (URL-quoted)
        assert next(container.demux(video=0)) is not None


def test_kill_ends_client_promptly(rtsp_server: MakeServer, rtsp_videos: dict[str, Path]) -> None:
    server = rtsp_server({"/cam1": rtsp_videos["h264"]})
    pgid = server.pid
    assert pgid is not None and process_group_alive(pgid)
    with open_rtsp(server.url("/cam1")) as container:
        demux = container.demux(video=0)
        next(demux)
        server.kill()
        assert not process_group_alive(pgid), "server or its ffmpeg relays survived kill()"
        killed = time.monotonic()
        try:
            for _ in demux:  # already-buffered packets may still come out
                assert time.monotonic() - killed < TIMEOUT[1] + 2
        except av.error.FFmpegError:
            pass  # a read error is as good as EOF: the point is that it does not hang
        assert time.monotonic() - killed < TIMEOUT[1] + 2
    with pytest.raises(av.error.ConnectionRefusedError):
        open_rtsp(server.url("/cam1"))


def test_restart_on_same_port(rtsp_server: MakeServer, rtsp_videos: dict[str, Path]) -> None:
    server = rtsp_server({"/cam1": rtsp_videos["h264"]})
    port, url = server.port, server.url("/cam1")
    with open_rtsp(url) as container:
        next(container.demux(video=0))
        server.kill()  # server side of a live connection closes first
        server.restart()
    assert server.port == port and server.url("/cam1") == url
    read_stream(url, seconds=1, codec="h264")
    pgid = server.pid
    assert pgid is not None
    server.stop()
    assert not server.running and not process_group_alive(pgid)
    server.restart()  # restart after a graceful stop works too
    assert server.running and server.port == port


def test_url_quotes_credentials(tmp_path: Path) -> None:
    server = RtspServer({"cam": tmp_path / "x.mp4"}, user="u@x", password="p:w/", port=8554)
    assert server.url("/cam") == "rtsp://u%40x:p%3Aw%2F@127.0.0.1:8554/cam"
    assert server.url("cam", anonymous=True) == "rtsp://127.0.0.1:8554/cam"
    assert server.url("/cam", user="a", password="b") == "rtsp://a:b@127.0.0.1:8554/cam"
