"""Registration that never trusts a guessed error code, and delivery that never stops while the
cloud is up: the real uploader against the fake ICE and the fake OSS (real processes)."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from agent.config import UploadSettings
from agent.deliver.acs import Credentials
from agent.deliver.answers import OUTAGE, THROTTLED
from agent.deliver.credentials import StaticCredentialSource
from agent.deliver.ice import IceClient, IceParameterError
from agent.deliver.library import init_library
from agent.deliver.loop import DeliveryLoop
from agent.deliver.oss import OssUploader
from agent.deliver.registrar import media_id, msg_body
from agent.service.status import render
from agent.spool import Spool
from tests.support.delivery import (
    AK,
    BUCKET,
    DEVICE,
    LIB,
    REGION,
    SK,
    Clock,
    assert_registered_once,
    cloud_settings,
    make_clips,
    make_uploader,
)
from tests.support.fake_ice import FakeIce

UNSETTLED = ("pending", "uploading", "uploaded", "registered")


def settle(up: DeliveryLoop, spool: Spool, clock: Clock, max_rounds: int = 400) -> None:
    """Step the uploader until nothing is left to do, moving the clock to the next due time.
    Fails if the uploader stops claiming work while some is due (the bug this file is about)."""
    o, i = up.make_oss(), up.make_ice()
    try:
        idle = 0
        for _ in range(max_rounds):
            if up.step(spool, o, i):
                idle = 0
                continue
            due = [r.next_attempt_at for r in spool.rows() if r.state in UNSETTLED]
            if not due:
                return
            idle += 1
            assert idle < 5, f"work is due but the uploader claims none: {up.health}"
            clock.now = max(clock.now, min(due), up.health.retry_at) + 0.001
    finally:
        i.close()
    raise AssertionError(f"not settled: {spool.counts()}")


def client(ice: FakeIce, **kw) -> IceClient:  # noqa: F811
    return IceClient(ice.url, lambda: Credentials(AK, SK), **kw)


def to_state(up: DeliveryLoop, spool: Spool, clock: Clock, state: str) -> None:
    """Bring every clip to `state` ("uploaded": sent to OSS, not registered yet)."""
    o = up.make_oss()
    assert state == "uploaded"
    for row in spool.rows():
        up.upload(spool, o, row)
    assert all(r.state == state for r in spool.rows()), spool.counts()


def outcome(spool: Spool) -> list[tuple]:
    return [(r.clip_id, r.state, r.media_id, r.reason) for r in spool.rows()]


# -- 1. read-your-writes registration -------------------------------------------------------

DUPLICATES = {
    "409 MediaAlreadyExist": dict(),
    "400 InvalidParameter in words": dict(
        status=400, code="InvalidParameter", message="The media already exists."
    ),
    "400 with a code never seen": dict(status=400, code="Media.Conflict", message="conflict"),
    "500 on the duplicate": dict(status=500, code="InternalError", message="oops"),
}


@pytest.mark.parametrize("missing", ["error", "empty"])
@pytest.mark.parametrize("answer", [*DUPLICATES, "timeout after it took effect", "reset after"])
def test_an_insert_that_took_effect_ends_registered_once_whatever_the_answer(
    tmp_path, oss, ice, answer, missing
):
    spool = make_clips(tmp_path, 2)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock)
    up.make_ice = lambda: client(ice, read_timeout=0.5)
    ice.control("set", missing_media=missing)
    to_state(up, spool, clock, "uploaded")
    if answer in DUPLICATES:
        # The first insert took effect, then the agent died before the spool knew: the retry
        # meets the MediaId in the library, answered in these words.
        ice.control("duplicate_insert", mode="reject", **DUPLICATES[answer])
        with client(ice) as c:
            for row in spool.rows():
                mid = media_id(DEVICE, row.camera, row.clip_id)
                c.insert_media(LIB, DEVICE, mid, "oss://b/k.mp4", [], msg_body(row, DEVICE))
    elif answer.startswith("timeout"):
        ice.control("fault", action="InsertMediaToSearchLib", kind="delay", delay=1.5, count=2)
    else:
        ice.control("fault", action="InsertMediaToSearchLib", kind="drop", process=True, count=2)
    settle(up, spool, clock)
    state = ice.state()
    assert len(state["media"]) == 2, state["media"]
    assert all(r.state == "indexed" and r.reason is None for r in spool.rows())
    assert all(n == 1 for n in state["registered"].values()), state["registered"]
    asked = [r for r in state["requests"] if r["action"] == "QueryMediaIndexJob"]
    assert asked, "the library was not asked"


@pytest.mark.parametrize("missing", ["error", "empty"])
def test_an_insert_refused_in_unknown_words_fails_with_the_message_when_the_media_is_not_there(
    tmp_path, oss, ice, missing
):
    spool = make_clips(tmp_path, 1)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock)
    ice.control("set", missing_media=missing)
    to_state(up, spool, clock, "uploaded")
    ice.control(
        "fault",
        action="InsertMediaToSearchLib",
        kind="error",
        status=400,
        code="Media.Refused",
        message="the video is not decodable",
    )
    settle(up, spool, clock)
    [row] = spool.rows()
    assert row.state == "failed", row
    assert "Media.Refused" in row.reason and "not decodable" in row.reason
    assert "RequestId" in row.reason
    assert ice.state()["media"] == []
    assert up.health.online, "a refused clip is not an outage"


def test_a_5xx_on_an_insert_that_did_not_happen_retries_it(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 1)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock)
    to_state(up, spool, clock, "uploaded")
    ice.control("fault", action="InsertMediaToSearchLib", kind="unavailable", count=1)
    o, i = up.make_oss(), up.make_ice()
    assert up.step(spool, o, i)
    i.close()
    [row] = spool.rows()
    assert row.state == "uploaded" and "ServiceUnavailable" in row.last_error
    assert up.health.reason == OUTAGE
    settle(up, spool, clock)
    assert_registered_once(spool, oss, ice)


def test_cloud_init_decides_with_query_search_lib_not_with_error_codes(tmp_path, ice):
    cloud = cloud_settings(None, ice)
    with client(ice) as c:
        # The library exists (the fixture made it) but the first query is answered in words
        # of its own; the create call then fails, and a second query settles it.
        ice.control(
            "fault", action="QuerySearchLib", kind="error", status=400, code="Lib.Odd", count=1
        )
        ice.control("fault", action="CreateSearchLib", kind="error", status=400, code="Whatever")
        done = init_library(c, cloud, "Shared")
        assert f"search library {LIB} exists" in done and "index mm exists" in done
        # A library that is not there, whose absence is answered as a 400 with an unknown
        # code: created, and its index too.
        ice.control("reset")
        ice.control(
            "fault", action="QuerySearchLib", kind="error", status=400, code="Lib.Gone", count=1
        )
        done = init_library(c, cloud, "Shared")
        assert f"search library {LIB} created" in done and "index mm created (level Shared)" in done
        assert list(ice.state()["search_libs"][LIB]["indexes"]) == ["mm"]
        # A create that really fails: its own error, not a guess.
        ice.control("reset")
        bad = dataclasses.replace(cloud, search_lib="bad-name")
        with pytest.raises(IceParameterError, match="SearchLibName"):
            init_library(c, bad, "Shared")


# -- 2. delivery never stops while the cloud is up ------------------------------------------


def _go_offline(up: DeliveryLoop, spool: Spool, clock: Clock, oss, ice, stage: str) -> None:  # noqa: F811
    o, i = up.make_oss(), up.make_ice()
    try:
        if stage == "register":
            to_state(up, spool, clock, "uploaded")
            ice.control("fault", action="InsertMediaToSearchLib", kind="unavailable", count=1)
        else:
            oss.fault("status", status=503, code="ServiceUnavailable", count=1)
        assert up.step(spool, o, i)
        assert not up.health.online
        due = min(r.next_attempt_at for r in spool.rows())
        clock.now = max(up.health.retry_at, due) + 0.001
    finally:
        i.close()


def _clip_file(spool: Spool) -> Path:
    [row] = spool.rows()
    return spool.absolute(row.clip_path)


PROBE_FAILURES = {
    # name: (stage the probe is at, what breaks it, the probed clip's state afterwards)
    "ice refuses the clip (400)": ("register", "ice-400", "failed"),
    "ice duplicate in unknown words": ("register", "ice-dup", "registered"),
    "ice drops the connection": ("register", "ice-drop", "uploaded"),
    "ice throttles with retry-after": ("register", "ice-throttle", "uploaded"),
    "oss refuses the object (400)": ("upload", "oss-400", "failed"),
    "oss resets the connection": ("upload", "oss-reset", "uploading"),
    "local clip file missing": ("upload", "missing", "failed"),
    "clip file not renamed yet": ("upload", "tmp", "uploading"),
    "a bug in the step": ("upload", "bug", "uploading"),
    "bucket does not exist": ("upload", "oss-nobucket", "uploading"),
    "library does not exist": ("register", "ice-nolib", "uploaded"),
}


@pytest.mark.parametrize("name", sorted(PROBE_FAILURES))
def test_no_failure_of_the_probe_leaves_the_uploader_idle(tmp_path, oss, ice, name):  # noqa: F811
    stage, kind, state_after = PROBE_FAILURES[name]
    # Cameras of their own: the bucket outlives the test, and an object already there (same
    # key, same bytes) would not be sent again, so a fault aimed at its PUT would miss.
    first, second = f"a{random.randrange(10**9)}", f"b{random.randrange(10**9)}"
    spool = make_clips(tmp_path, 1, camera=first)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock, max_backoff=30)
    _go_offline(up, spool, clock, oss, ice, stage)
    restore = None
    if kind == "ice-400":
        ice.control(
            "fault", action="InsertMediaToSearchLib", kind="error", status=400, code="InvalidInput"
        )
    elif kind == "ice-dup":
        [row] = spool.rows()
        with client(ice) as c:
            mid = media_id(DEVICE, row.camera, row.clip_id)
            c.insert_media(LIB, DEVICE, mid, "oss://b/k.mp4", [], msg_body(row, DEVICE))
        ice.control("duplicate_insert", mode="reject", status=400, code="Nope", message="no")
    elif kind == "ice-drop":
        ice.control("fault", action="InsertMediaToSearchLib", kind="drop")
    elif kind == "ice-throttle":
        ice.control("fault", action="*", kind="throttle", retry_after=5000)
    elif kind == "ice-nolib":
        ice.control("reset")
        restore = lambda: init_library(client(ice), cloud_settings(None, ice), "Shared")  # noqa: E731
    elif kind == "oss-400":
        oss.fault("status", status=400, code="InvalidArgument", op="PutObject")
    elif kind == "oss-reset":
        oss.fault("reset", op="PutObject")
    elif kind == "oss-nobucket":
        oss.fault("status", status=404, code="NoSuchBucket", count=None)
        restore = oss.clear_faults
    elif kind == "missing":
        _clip_file(spool).unlink()
    elif kind == "tmp":
        path = _clip_file(spool)
        path.rename(f"{path}.tmp")
        restore = lambda: Path(f"{path}.tmp").rename(path)  # noqa: E731
    elif kind == "bug":
        real = up.upload
        calls = []

        def broken(*args):
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("a bug")
            return real(*args)

        up.upload = broken
    o, i = up.make_oss(), up.make_ice()
    try:
        assert up.step(spool, o, i), "the probe was not sent"
    finally:
        i.close()
    [probed] = spool.rows()
    assert probed.state == state_after, (probed.state, probed.reason, probed.last_error)
    assert up.health.probe is None, "the probe never ended"
    if restore:
        restore()
    # New clips while the cloud is up: every one of them goes through.
    more = make_clips(tmp_path, 3, camera=second)
    more.close()
    settle(up, spool, clock)
    fresh = [r for r in spool.rows() if r.camera == second]
    assert len(fresh) == 3 and all(r.state == "indexed" for r in fresh), outcome(spool)
    assert up.health.online
    [again] = [r for r in spool.rows() if r.camera == first]
    assert again.state == ("failed" if state_after == "failed" else "indexed"), again


@pytest.mark.parametrize(
    "where",
    ["oss NoSuchBucket", "ice library missing"],
)
def test_a_bucket_or_library_wide_error_pauses_with_a_reason_and_fails_no_clip(
    tmp_path, oss, ice, where
):
    spool = make_clips(tmp_path, 4)
    clock = Clock()
    bucket = BUCKET
    if where.startswith("oss"):
        bucket = f"ipc-missing-{random.randrange(10**6)}"
    up = paused_uploader(tmp_path, oss, ice, clock, bucket)
    if where.startswith("ice"):
        to_state(up, spool, clock, "uploaded")
        ice.control("reset")
    o, i = up.make_oss(), up.make_ice()
    try:
        for _ in range(12):  # two minutes of the uploader's time
            if not up.step(spool, o, i):
                clock.now += 10
    finally:
        i.close()
    rows = list(spool.rows())
    assert all(r.state != "failed" for r in rows), outcome(spool)
    assert not up.health.online
    reason = up.health.reason
    if where.startswith("oss"):
        assert reason == f"bucket {bucket}: NoSuchBucket"
    else:
        assert reason == f"search library {LIB} does not exist (ipc-agent cloud init creates it)"
    tried = sum(r.attempts for r in rows)
    assert tried <= 3, "a paused uploader went on trying clip after clip"
    table = render(status_model(up))
    assert f"cloud: DELIVERY PAUSED ({reason})" in table.replace("\n  ", " ")
    # The operator fixes the cause: delivery resumes by itself.
    if where.startswith("oss"):
        oss.create_bucket(bucket)
    else:
        with client(ice) as c:
            init_library(c, cloud_settings(None, ice), "Shared")
    settle(up, spool, clock)
    assert all(r.state == "indexed" for r in spool.rows()), outcome(spool)
    assert up.health.online


def paused_uploader(tmp_path, oss, ice, clock, bucket) -> DeliveryLoop:  # noqa: F811
    source = StaticCredentialSource(Credentials(AK, SK))
    cloud = dataclasses.replace(cloud_settings(oss, ice), bucket=bucket)
    return DeliveryLoop(
        tmp_path,
        DEVICE,
        cloud,
        UploadSettings(max_backoff=60),
        make_oss=lambda: OssUploader(
            endpoint=oss.endpoint,
            region=REGION,
            bucket=bucket,
            credentials=source,
            checkpoint_dir=tmp_path / "oss-checkpoints",
        ),
        make_ice=lambda: IceClient(ice.url, source.get),
        clock=clock,
        rng=random.Random(0),
        index_checks=(0.0,),
    )


def status_model(up: DeliveryLoop) -> dict:
    snap = up.snapshot()
    return {
        "daemon": {"running": True, "pid": 1, "uptime_s": 5, "version": "0"},
        "config": {"source": "agent.toml", "version": "local"},
        "cameras": [],
        "uploader": {"pid": 2, "restarts": 0, **snap},
        "queue": None,
        "disk": {"data_dir": "/var/lib/ipc-agent", "used_bytes": 0, "free_bytes": 0},
        "fleet": {},
    }


# -- retry-after ------------------------------------------------------------------------------


def test_ice_retry_after_is_honoured(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 1)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock, max_backoff=10)
    to_state(up, spool, clock, "uploaded")
    ice.control(
        "fault", action="InsertMediaToSearchLib", kind="throttle", retry_after=45_000, count=1
    )
    start = clock.now
    o, i = up.make_oss(), up.make_ice()
    try:
        assert up.step(spool, o, i)
        assert up.health.reason == THROTTLED
        assert up.health.retry_at - start >= 45, "retried before the service said"
        [row] = spool.rows()
        assert row.next_attempt_at - start >= 45
        clock.now = start + 44
        assert not up.step(spool, o, i)
    finally:
        i.close()
    settle(up, spool, clock)
    assert_registered_once(spool, oss, ice)


def test_oss_throttling_and_its_retry_after_are_honoured(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 1)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock, max_backoff=5)
    oss.fault("status", status=503, code="SlowDown", retry_after=20, count=1)
    start = clock.now
    o, i = up.make_oss(), up.make_ice()
    try:
        assert up.step(spool, o, i)
    finally:
        i.close()
    assert up.health.reason == THROTTLED
    assert up.health.retry_at - start >= 20
    settle(up, spool, clock)
    assert_registered_once(spool, oss, ice)


def test_a_row_whose_keyframes_cannot_be_read_waits_and_the_rest_goes_through(tmp_path, oss, ice):
    spool = make_clips(tmp_path, 3)
    clock = Clock()
    up = make_uploader(tmp_path, oss, ice, clock=clock)
    [first, *_] = spool.rows()
    with spool.db.conn:
        spool.db.conn.execute("UPDATE clips SET keyframes = '[' WHERE id = ?", [first.id])
    o, i = up.make_oss(), up.make_ice()
    try:
        for _ in range(30):
            if not up.step(spool, o, i):
                clock.now += 5
    finally:
        i.close()
    rows = {r.id: r for r in spool.rows()}
    assert rows[first.id].state in ("pending", "uploading")
    assert "JSONDecodeError" in rows[first.id].last_error
    assert sum(r.state == "indexed" for r in rows.values()) == 2
    json.dumps(outcome(spool))
