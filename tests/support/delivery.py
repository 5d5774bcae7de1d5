"""A gateway delivering to the local OSS and ICE servers (tests.support.fake_oss, fake_ice): its
account and cloud settings, catalogued clips with real files, and an uploader stepped by hand.

The servers themselves are the ``oss`` and ``ice`` fixtures of tests/conftest.py.
"""

from __future__ import annotations

import random
from pathlib import Path

from agent.config import CloudSettings, UploadSettings
from agent.deliver.acs import Credentials
from agent.deliver.credentials import StaticCredentialSource
from agent.deliver.ice import IceClient
from agent.deliver.loop import DeliveryLoop
from agent.deliver.oss import OssUploader
from agent.deliver.registrar import media_id
from agent.spool import ClipRecord, Spool

from .fake_ice import FakeIce
from .fake_oss import FakeOss

AK, SK = "LTAI5tDeliveryTestKey", "delivery-test-secret-0123456789"
REGION, BUCKET, LIB, DEVICE = "cn-hangzhou", "ipc-test-bucket", "IPCamera_test", "gw-test"


def cloud_settings(oss: FakeOss | None, ice: FakeIce) -> CloudSettings:
    return CloudSettings(
        region=REGION,
        bucket=BUCKET,
        prefix="ipc/",
        oss_endpoint=oss.endpoint if oss else "http://127.0.0.1:1",
        ice_endpoint=ice.url,
        search_lib=LIB,
        namespace=DEVICE,
    )


def agent_config(tmp_path: Path, oss: FakeOss, ice: FakeIce) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path}"\ndevice_id = "{DEVICE}"\n'
        f'[cloud]\nregion = "{REGION}"\nbucket = "{BUCKET}"\noss_endpoint = "{oss.endpoint}"\n'
        f'ice_endpoint = "{ice.url}"\nsearch_lib = "{LIB}"\nnamespace = "{DEVICE}"\n'
    )
    return config


class Clock:
    """A clock the test moves by hand, so backoffs are checked without waiting them out."""

    def __init__(self) -> None:
        self.now = 1_795_000_000.0

    def __call__(self) -> float:
        return self.now


def make_clips(data_dir: Path, n: int, size: int = 50_000, camera: str = "cam1") -> Spool:
    """`n` catalogued clips with real files (random bytes: OSS does not look inside)."""
    spool = Spool(data_dir)
    rng = random.Random(n)
    for i in range(n):
        clip_id = f"{camera}_20261124T1000{i:02d}Z_{i:06x}"
        day = data_dir / "clips" / camera / "2026-11-24"
        day.mkdir(parents=True, exist_ok=True)
        video = day / f"{clip_id}.mp4"
        video.write_bytes(rng.randbytes(size))
        kfs = []
        for k in range(2):
            jpg = day / f"{clip_id}_{k}.jpg"
            jpg.write_bytes(b"\xff\xd8\xff" + rng.randbytes(2000))
            kfs.append((jpg, 1.0 + k))
        spool.add(
            ClipRecord(
                clip_id=clip_id,
                camera=camera,
                start_wall=1_795_000_000.0 + 60 * i,
                media_start=0.0,
                media_end=10.0,
                event_start=3.0,
                event_end=5.0,
                clip_path=video,
                clip_bytes=size,
                keyframes=tuple(kfs),
                keyframe_bytes=4006,
                codec="h264",
                width=640,
                height=360,
                frames=150,
                peak_score=0.1,
                mean_score=0.05,
            )
        )
    return spool


def make_uploader(
    data_dir: Path, oss: FakeOss, ice: FakeIce, *, secret: str = SK, clock=None, **upload
) -> DeliveryLoop:
    source = StaticCredentialSource(Credentials(AK, secret))
    cloud = cloud_settings(oss, ice)

    def make_oss() -> OssUploader:
        return OssUploader(
            endpoint=oss.endpoint,
            region=REGION,
            bucket=BUCKET,
            credentials=source,
            checkpoint_dir=data_dir / "oss-checkpoints",
        )

    def make_ice() -> IceClient:
        return IceClient(ice.url, source.get)

    kwargs = {"clock": clock} if clock else {}
    return DeliveryLoop(
        data_dir,
        DEVICE,
        cloud,
        UploadSettings(**upload),
        make_oss=make_oss,
        make_ice=make_ice,
        rng=random.Random(0),
        index_checks=(0.0,),
        **kwargs,
    )


def drain(up: DeliveryLoop, spool: Spool, clock: Clock, max_steps: int = 500) -> int:
    """Step the uploader by hand; when nothing is due, move the clock to the next due time."""
    oss, ice = up.make_oss(), up.make_ice()
    steps = 0
    try:
        while steps < max_steps:
            if up.step(spool, oss, ice):
                steps += 1
                continue
            due = [
                r.next_attempt_at
                for r in spool.rows()
                if r.state in ("pending", "uploading", "uploaded", "registered")
            ]
            if not due:
                return steps
            clock.now = max(clock.now, min(due), up.health.retry_at) + 0.001
    finally:
        ice.close()
    raise AssertionError(f"not drained after {max_steps} steps: {spool.counts()}")


def assert_registered_once(spool: Spool, oss: FakeOss, ice: FakeIce) -> None:
    state = ice.state()
    media = {m["media_id"]: m for m in state["media"]}
    rows = list(spool.rows())
    assert {r.state for r in rows} == {"indexed"}, spool.counts()
    assert len(media) == len(rows), "a clip registered twice, or a media without a clip"
    for row in rows:
        mid = media_id(DEVICE, row.camera, row.clip_id)
        assert row.media_id == mid and mid in media
        assert state["registered"].get(mid) == 1, f"{mid} registered {state['registered']}"
        stored = oss.object_bytes(BUCKET, row.clip_key)
        assert stored == spool.absolute(row.clip_path).read_bytes() or row.local_deleted
        keys = row.keyframe_keys
        assert len(keys) == 2 and all(oss.object_bytes(BUCKET, k) for k in keys)
