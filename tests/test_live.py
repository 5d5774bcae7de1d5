"""The agent on live RTSP cameras served by a real GStreamer RTSP server."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from agent.capture.source import AuthError, Source, open_input
from agent.config import CameraConfig
from tests.support.agentproc import (
    assert_catalog_matches_disk,
    catalogue,
    start,
    terminate,
    wait_for,
    write_config,
)
from tests.support.media import assert_valid_clip
from tests.support.synth import make_scene

pytestmark = pytest.mark.rtsp


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live-scenes")
    # Short GOP (1 s) keeps RTSP start-up short: a client waits for a keyframe to begin.
    return {
        "h264": make_scene("walk", folder, fps=15, gop=15, duration=30),
        "h265": make_scene("walk", folder, fps=15, gop=15, duration=30, codec="libx265"),
    }


def stop_agent(proc, log: Path) -> str:
    if proc.poll() is None:
        terminate(proc)
    return log.read_text()


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_live_camera_motion_becomes_clips(rtsp_server, scenes, tmp_path, codec):
    server = rtsp_server({"/cam1": scenes[codec].path}, codec=codec)
    log = tmp_path / "agent.log"
    proc = start(write_config(tmp_path, server.url("/cam1")), log=log)
    data = tmp_path / "data"
    try:
        wait_for(
            lambda: len(catalogue(data)) >= 2 if (data / "spool.db").exists() else False,
            120,
            "two clips from the live camera",
        )
    finally:
        out = stop_agent(proc, log)
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    rows = assert_catalog_matches_disk(data)
    for row in rows:
        assert row.codec == {"h264": "h264", "h265": "hevc"}[codec]
        assert_valid_clip(data / row.clip_path, row.media_start, row.media_end, codec=row.codec)
        assert row.keyframes != (), "a clip of a walking person without keyframes"


def test_server_killed_and_restarted_the_agent_reconnects_and_goes_on(
    rtsp_server, scenes, tmp_path
):
    server = rtsp_server({"/cam1": scenes["h264"].path})
    log = tmp_path / "agent.log"
    proc = start(write_config(tmp_path, server.url("/cam1")), log=log)
    data = tmp_path / "data"
    try:
        wait_for(lambda: (data / "spool.db").exists() and catalogue(data), 120, "a first clip")
        server.kill()
        wait_for(
            lambda: "reconnecting" in log.read_text() or "retrying" in log.read_text(),
            30,
            "the agent to notice the camera is gone",
        )
        before = len(catalogue(data))
        server.restart()
        wait_for(lambda: len(catalogue(data)) > before, 120, "a clip after the restart")
    finally:
        out = stop_agent(proc, log)
    assert proc.returncode == 0, out
    assert_catalog_matches_disk(data)


def test_wrong_password_is_reported_retried_slowly_and_never_leaks(
    rtsp_server, scenes, tmp_path, caplog
):
    server = rtsp_server({"/cam1": scenes["h264"].path}, user="admin", password="right-one")
    bad_url = server.url("/cam1", user="admin", password="wrong-secret")
    with pytest.raises(AuthError) as exc:
        open_input(bad_url)
    assert "credentials" in str(exc.value) and "wrong-secret" not in str(exc.value)

    class RecordingStop(threading.Event):
        """Stop event that records the backoff the source asks for, then stops it."""

        delays: list[float] = []

        def wait(self, timeout=None):
            self.delays.append(timeout)
            self.set()
            return True

    stop = RecordingStop()
    source = Source(CameraConfig(name="cam1", url=bad_url), stop)
    with caplog.at_level(logging.WARNING):
        assert list(source.connections()) == []
    assert source.state in ("auth-failed", "stopped")
    assert stop.delays and stop.delays[0] >= 15, f"auth failure retried too fast: {stop.delays}"
    assert "wrong-secret" not in caplog.text and "credentials" in caplog.text


def test_agent_with_wrong_password_stays_up_and_stops_promptly(rtsp_server, scenes, tmp_path):
    server = rtsp_server({"/cam1": scenes["h264"].path}, user="admin", password="right-one")
    url = server.url("/cam1", user="admin", password="wrong-secret")
    log = tmp_path / "agent.log"
    proc = start(write_config(tmp_path, url), log=log)
    try:
        wait_for(lambda: "credentials" in log.read_text(), 60, "the credentials error")
        assert proc.poll() is None, "the agent died on a wrong password"
    finally:
        out = stop_agent(proc, log)
    assert proc.returncode == 0
    assert "wrong-secret" not in out and "admin:***@" in out
    assert out.count("credentials") == 1, "auth failures retried in a tight loop"


def test_wall_times_are_capture_times_not_the_probe_delay(rtsp_server, scenes):
    """A packet is stamped with when it was captured, never later than it reached us: FFmpeg's
    stream probing hands the first ~1.8 s over in a burst, and anchoring wall time on that first
    packet stamped every later one ~1.8 s in the future (clip names, the cloud's times and the
    sub-stream alignment all ran that late)."""
    server = rtsp_server({"/cam1": scenes["h264"].path})
    stop = threading.Event()
    source = Source(CameraConfig(name="cam1", url=server.url("/cam1")), stop)
    seen = []  # (media t, wall stamped, time handed to us)
    for conn in source.connections():
        for mp in conn.packets:
            seen.append((mp.t, mp.wall, time.time()))
            if mp.t - seen[0][0] >= 6.0:
                stop.set()
                break
    t0, _, first_arrival = seen[0]
    burst = [s for s in seen if s[2] - first_arrival < 0.05]
    assert burst[-1][0] - t0 > 0.5, "no probe burst: this test would prove nothing"
    ahead = max(wall - arrival for _, wall, arrival in seen)
    assert ahead <= 0.001, f"a packet stamped {ahead:.2f} s after it arrived"
    # After the burst packets come in real time and are stamped within the delivery delay.
    steady = [arrival - wall for t, wall, arrival in seen if t - t0 > burst[-1][0] - t0 + 1.0]
    assert len(steady) > 30 and max(steady) < 0.3, max(steady)
