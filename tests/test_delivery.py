"""Delivery against local OSS and ICE servers (real processes): exactly once, offline-safe."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from agent.capture.catalog import SpoolSink
from agent.deliver.acs import Credentials
from agent.deliver.ice import IceClient
from agent.deliver.library import init_library, search
from agent.spool import STOP_RECORDING, ClipRecord, Spool
from agent.spool_repair import recover
from tests.support.agentproc import start, wait_for
from tests.support.delivery import (
    AK,
    BUCKET,
    DEVICE,
    LIB,
    SK,
    Clock,
    agent_config,
    assert_registered_once,
    cloud_settings,
    drain,
    make_clips,
    make_uploader,
)


def test_backlog_drains_with_worker_threads_each_clip_once(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 12)
    up = make_uploader(tmp_path, oss, ice, concurrency=3, keep_local_hours=1)
    stop = threading.Event()
    runner = threading.Thread(target=up.run, args=(stop,))
    runner.start()
    try:
        wait_for(lambda: spool.counts()["indexed"] == 12, 60, "the backlog to be indexed")
    finally:
        stop.set()
        runner.join(30)
    assert_registered_once(spool, oss, ice)
    row = next(spool.rows())
    body = next(m for m in ice.state()["media"] if m["media_id"] == row.media_id)
    assert row.clip_key.startswith(f"ipc/{DEVICE}/cam1/2026/11/")
    assert body["input"] == f"oss://{BUCKET}/{row.clip_key}"


def test_cloud_outage_backs_off_then_every_clip_registers_once(tmp_path, oss, ice, caplog):
    spool = make_clips(tmp_path, 4)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock, max_backoff=30)
    oss.fault("status", count=None, status=503, code="ServiceUnavailable")
    o, i = up.make_oss(), up.make_ice()
    with caplog.at_level(logging.WARNING):
        assert up.step(spool, o, i)  # the first try fails ...
        assert not up.health.online
        seen = len(oss.requests())
        for _ in range(20):  # ... and nothing is tried again before the backoff has passed
            assert not up.step(spool, o, i)
        assert len(oss.requests()) == seen, "retried before the backoff"
        for _ in range(6):  # probes, one at a time, with a growing backoff up to max_backoff
            clock.now = up.health.retry_at + 0.001
            assert up.step(spool, o, i) and not up.health.online
        assert up.health.retry_at - clock.now <= 30
        assert {r.state for r in spool.rows()} <= {"pending", "uploading"}
        oss.clear_faults()
        drain(up, spool, clock)
    assert_registered_once(spool, oss, ice)
    assert caplog.text.count("cloud unreachable") == 1, "one log line per state change"
    assert caplog.text.count("reachable again") == 1


def test_ice_throttling_backs_off_then_registers_once(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 3)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock)
    ice.control("fault", action="InsertMediaToSearchLib", kind="throttle", count=4)
    drain(up, spool, clock)
    assert_registered_once(spool, oss, ice)
    state = ice.state()
    throttled = [
        r
        for r in state["requests"]
        if r["action"] == "InsertMediaToSearchLib" and r["code"] == "Throttling.User"
    ]
    assert len(throttled) == 4 and sum(state["insert_calls"].values()) == 3


def test_timeout_after_the_insert_took_effect_does_not_register_twice(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 1)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock)
    ice.control("fault", action="InsertMediaToSearchLib", kind="drop", process=True, count=1)
    drain(up, spool, clock)
    assert_registered_once(spool, oss, ice)


def test_wrong_credentials_keep_clips_pending_without_a_retry_storm(tmp_path, oss, ice, caplog):
    spool = make_clips(tmp_path, 3)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock, secret="wrong-secret", max_backoff=60)
    o, i = up.make_oss(), up.make_ice()
    before = len(oss.requests())
    with caplog.at_level(logging.ERROR):
        assert up.step(spool, o, i)
        for _ in range(50):
            clock.now += 1  # 50 s of polling: still inside the 60 s pause
            assert not up.step(spool, o, i)
    assert len(oss.requests()) - before <= 2, "rejected credentials retried in a loop"
    states = {r.state for r in spool.rows()}
    assert states <= {"pending", "uploading"}, f"clips failed for a fixable cause: {states}"
    assert "credentials rejected" in caplog.text and "wrong-secret" not in caplog.text
    assert caplog.text.count("credentials rejected") == 1


def test_a_rejected_parameter_fails_the_clip_with_the_reason_and_retry_requeues(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 1)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock)
    ice.control(
        "fault",
        action="InsertMediaToSearchLib",
        kind="error",
        status=400,
        code="InvalidParameter",
        message="bad MsgBody",
        count=1,
    )
    drain(up, spool, clock)
    [row] = spool.rows()
    assert row.state == "failed" and "InvalidParameter" in row.reason
    assert "RequestId" in row.reason
    assert spool.requeue() == 1 and spool.row(row.id).state == "uploaded"
    drain(up, spool, clock)
    assert_registered_once(spool, oss, ice)


def test_drop_oldest_deletes_the_oldest_pending_video_and_keeps_its_record(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 5, size=100_000)
    up = make_uploader(tmp_path, oss, ice, max_spool_bytes=250_000)
    up.guard(spool)
    rows = list(spool.rows())
    dropped = [r for r in rows if r.state == "dropped"]
    assert [r.id for r in dropped] == [1, 2, 3], "not the oldest, or not enough"
    for r in dropped:
        assert r.local_deleted == 1 and "dropped to make room" in r.reason
        assert not spool.absolute(r.clip_path).exists()
        assert all(spool.absolute(k.path).exists() for k in r.keyframes)
    assert up.drops == 3 and spool.bytes_not_in_cloud() <= 250_000
    recover(Spool(tmp_path), tmp_path / "clips")  # catalog and disk agree
    assert [r.state for r in spool.rows()] == ["dropped"] * 3 + ["pending"] * 2


def test_stop_recording_refuses_new_clips_until_there_is_room(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 3, size=100_000)
    up = make_uploader(tmp_path, oss, ice, max_spool_bytes=200_000, on_full="stop_recording")
    up.guard(spool)
    sink = SpoolSink(spool)
    assert "not yet uploaded" in sink.refusal()
    assert spool.counts()["pending"] == 3, "stop_recording must not drop anything"
    clock = Clock()
    up.clock = clock
    drain(up, spool, clock)
    up.guard(spool)
    assert sink.refusal() is None and spool.get_meta(STOP_RECORDING) is None


def test_registered_clips_leave_the_gateway_after_keep_local_hours(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 2)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock, keep_local_hours=2)
    drain(up, spool, clock)
    up.guard(spool)
    assert all(spool.absolute(r.clip_path).exists() for r in spool.rows())
    clock.now += 2 * 3600 + 1
    up.guard(spool)
    for r in spool.rows():
        assert r.local_deleted == 1 and r.state == "indexed"
        assert not spool.absolute(r.clip_path).exists()


def test_cloud_init_twice_is_a_no_op_the_second_time(tmp_path, ice):
    cloud = cloud_settings(None, ice)
    with IceClient(ice.url, lambda: Credentials(AK, SK)) as client:
        again = init_library(client, cloud, "Shared")  # the fixture already ran it once
    assert f"search library {LIB} exists" in again and "index mm exists" in again
    assert not any("created" in line for line in again)
    assert ice.state()["calls"].get("CreateSearchLib", 0) == 1


def test_search_maps_hits_to_camera_and_wall_clock(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 2)
    clock = Clock()
    drain(make_uploader(tmp_path, oss, ice, clock=clock), spool, clock)
    with IceClient(ice.url, lambda: Credentials(AK, SK)) as client:
        total, matches = search(client, cloud_settings(oss, ice), spool, "cam1")
    assert total == 2 and len(matches) == 2
    by_clip = {m.clip_id: m for m in matches}
    for row in spool.rows():
        m = by_clip[row.clip_id]
        assert m.camera == "cam1" and m.start == row.start_wall + 0.0
        assert m.end == row.start_wall + 5.0


# -- the agent as a process: kill -9 mid-upload and mid-registration ---------------------------


@pytest.fixture
def credentials_env(monkeypatch):
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SK)


def kill_group(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def test_kill_9_mid_multipart_upload_resumes_and_registers_once(
    tmp_path, oss, ice, credentials_env
):
    spool = make_clips(tmp_path, 1, size=9 * 2**20)  # over the 8 MiB multipart threshold
    config = agent_config(tmp_path, oss, ice)
    since = len(oss.requests())
    oss.fault("stall", count=None, op="UploadPart", params={"partNumber": "4"})
    proc = start(config, log=tmp_path / "agent1.log")
    try:
        oss.wait_for_request(
            lambda r: r["op"] == "UploadPart" and r["params"].get("partNumber") == "4",
            timeout=60,
            since=since,
        )
    finally:
        kill_group(proc)
    oss.clear_faults()
    proc = start(config, log=tmp_path / "agent2.log")
    try:
        wait_for(
            lambda: spool.counts()["registered"] + spool.counts()["indexed"] == 1,
            120,
            "the clip to be registered after the restart",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    log = [r for r in oss.requests(since) if r["op"] in ("InitiateMultipartUpload", "UploadPart")]
    assert sum(r["op"] == "InitiateMultipartUpload" for r in log) == 1, "the upload restarted"
    parts = [int(r["params"]["partNumber"]) for r in log if r["op"] == "UploadPart"]
    assert parts.count(1) == 1 and parts.count(2) == 1, f"finished parts sent again: {parts}"
    [row] = spool.rows()
    assert oss.object_bytes(BUCKET, row.clip_key) == spool.absolute(row.clip_path).read_bytes()
    assert ice.state()["registered"] == {row.media_id: 1}


def test_kill_9_between_insert_and_local_commit_registers_once(tmp_path, oss, ice, credentials_env):
    spool = make_clips(tmp_path, 1)
    config = agent_config(tmp_path, oss, ice)
    ice.control("fault", action="InsertMediaToSearchLib", kind="delay", delay=60, count=1)
    proc = start(config, log=tmp_path / "agent1.log")
    try:
        wait_for(lambda: ice.state()["insert_calls"], 60, "the insert to reach the library")
    finally:
        kill_group(proc)
    assert next(spool.rows()).state == "uploaded", "committed before the answer came"
    proc = start(config, log=tmp_path / "agent2.log")
    try:
        wait_for(
            lambda: spool.counts()["registered"] + spool.counts()["indexed"] == 1,
            60,
            "the clip to be registered after the restart",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    [row] = spool.rows()
    state = ice.state()
    assert state["insert_calls"][row.media_id] == 2 and state["registered"][row.media_id] == 1
    assert len(state["media"]) == 1


def test_a_clip_cut_while_the_clock_was_unset_waits_then_goes_up_renamed_from_the_boot_clock(
    tmp_path, oss, ice
):
    spool = Spool(tmp_path)
    clip_id = "cam1_19700101T010005Z_c0ffee"  # a box without an RTC, booted at the epoch
    day = tmp_path / "clips" / "cam1" / "1970-01-01"
    day.mkdir(parents=True)
    video, jpg = day / f"{clip_id}.mp4", day / f"{clip_id}_0.jpg"
    video.write_bytes(os.urandom(20_000))
    jpg.write_bytes(b"\xff\xd8\xff" + os.urandom(500))
    spool.add(
        ClipRecord(
            clip_id=clip_id,
            camera="cam1",
            start_wall=3605.0,
            media_start=0.0,
            media_end=10.0,
            event_start=3.0,
            event_end=5.0,
            clip_path=video,
            clip_bytes=20_000,
            keyframes=((jpg, 3.0),),
            keyframe_bytes=503,
            codec="h264",
            width=640,
            height=360,
            frames=150,
            peak_score=0.1,
            mean_score=0.05,
        )
    )
    clock = Clock()
    clock.now = 3700.0  # still 1970: nothing may go up under a 1970 name
    up = make_uploader(tmp_path, oss, ice, clock=clock)
    o, i = up.make_oss(), up.make_ice()
    assert up.step(spool, o, i)
    [row] = spool.rows()
    assert row.state == "pending" and row.clip_key is None, "uploaded before NTP"
    clock.now = time.time()  # NTP sets the clock
    drain(up, spool, clock)
    [row] = spool.rows()
    stamp = time.strftime("%Y%m%dT%H%M", time.gmtime(clock.now - 10))
    assert row.clip_id.startswith(f"cam1_{stamp}") and row.clip_id.endswith("_c0ffee")
    assert abs(row.start_wall - (clock.now - 10)) < 5, "not dated from the boot clock"
    assert row.state == "indexed" and not video.exists() and not jpg.exists()
    date = time.strftime("%Y/%m/%d", time.gmtime(row.start_wall))
    assert row.clip_key == f"ipc/{DEVICE}/cam1/{date}/{row.clip_id}.mp4"
    [media] = ice.state()["media"]
    assert media["msg_body"]["customFields"]["intField1"] == int(row.start_wall)


def test_a_clip_cut_at_1970_before_a_reboot_goes_up_as_it_is_and_says_so(
    tmp_path, oss, ice, caplog
):
    """Its boot clock died with the boot it was cut in: no better time can be given, and the
    operator is told rather than left to find a clip from 1970 in the library."""
    spool = make_clips(tmp_path, 1)
    [row] = spool.rows()
    with spool.db.conn:
        spool.db.conn.execute(
            "UPDATE clips SET start_wall = 3605.0, boot_id = 'an-earlier-boot' WHERE id = ?",
            (row.id,),
        )
    clock = Clock()
    clock.now = time.time()
    up = make_uploader(tmp_path, oss, ice, clock=clock)
    with caplog.at_level(logging.WARNING, logger="agent.deliver.uploader"):
        drain(up, spool, clock)
    [after] = spool.rows()
    assert after.state == "indexed" and after.clip_id == row.clip_id
    lost = [r.getMessage() for r in caplog.records if "real time is lost" in r.getMessage()]
    assert len(lost) == 1 and row.clip_id in lost[0], caplog.text


def test_a_retry_set_while_the_clock_ran_hours_ahead_is_due_once_it_is_put_back(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 2)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock, max_backoff=30)
    soon, stranded = (r.id for r in spool.rows())
    spool.defer(soon, "backing off", clock.now + 20)  # a real backoff: respected
    spool.defer(stranded, "set at +6 h", clock.now + 6 * 3600)  # then NTP put the clock back
    o, i = up.make_oss(), up.make_ice()
    assert up.step(spool, o, i)
    assert spool.row(stranded).state != "pending", "stranded until the clock catches up"
    assert spool.row(soon).state == "pending", "a real backoff was not waited out"
