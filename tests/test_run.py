"""`ipc-agent run` as real processes: the spool, SIGTERM mid-event, kill -9 mid-clip."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.agentproc import (
    assert_catalog_matches_disk,
    catalogue,
    start,
    wait_for,
    write_config,
)
from tests.support.media import assert_valid_clip
from tests.support.synth import make_scene


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    return make_scene("walk", tmp_path_factory.mktemp("run-scenes"))


@pytest.fixture(scope="module")
def long_event(tmp_path_factory):
    return make_scene("long_event", tmp_path_factory.mktemp("run-scenes"))


def test_run_once_catalogues_every_clip_as_pending(tmp_path, walk):
    proc = start(write_config(tmp_path, walk.path, realtime=False), "--once")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    rows = assert_catalog_matches_disk(tmp_path / "data")
    assert len(rows) >= len(walk.motion)
    for row in rows:
        assert row.state == "pending" and row.camera == "cam1"
        assert row.clip_id.startswith("cam1_") and row.codec == "h264"
        assert (row.width, row.height) == (walk.width, walk.height)
        assert row.started_at.endswith("Z") and row.duration > 0
        clip = tmp_path / "data" / row.clip_path
        assert_valid_clip(clip, row.media_start, row.media_end)


def test_sigterm_mid_event_finishes_the_clip_and_exits_zero(tmp_path, long_event):
    data = tmp_path / "data"
    proc = start(write_config(tmp_path, long_event.path, realtime=True))
    try:
        wait_for(lambda: list(data.rglob("*.mp4.tmp")), 90, "a clip to be in progress")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    [row] = assert_catalog_matches_disk(data)
    assert row.media_end < long_event.duration - 1, "the clip was not cut short by the stop"
    assert_valid_clip(data / row.clip_path, row.media_start, row.media_end)


def test_kill_9_mid_clip_then_restart_leaves_a_consistent_catalog(tmp_path, long_event):
    data = tmp_path / "data"
    proc = start(write_config(tmp_path, long_event.path, realtime=True))
    try:
        partial = wait_for(lambda: list(data.rglob("*.mp4.tmp")), 90, "a clip to be in progress")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the supervisor and its camera processes
        proc.communicate(timeout=30)
    assert partial[0].exists(), "kill -9 should leave the partial clip behind"
    assert catalogue(data) == []

    # The next start cleans up before capturing again, then catalogues clips as usual.
    proc = start(write_config(tmp_path, long_event.path, realtime=False), "--once")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "removed partial file" in out
    rows = assert_catalog_matches_disk(data)
    assert rows and all(r.state == "pending" for r in rows)


def test_run_without_cameras_says_so(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\ndata_dir = "{tmp_path}"\n')
    proc = start(config)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no [[cameras]] and no [cloud]" in out


def test_run_rejects_a_bad_config_naming_the_key(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text("[clip]\npre_roll = -1\n")
    proc = start(config)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "pre_roll" in out and str(config) in out
