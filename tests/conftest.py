"""Shared pytest fixtures: the RTSP test server, and the local OSS and ICE servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.deliver.acs import Credentials
from agent.deliver.credentials import StaticCredentialSource
from agent.deliver.ice import IceClient
from agent.deliver.library import init_library
from agent.deliver.oss import OssUploader
from tests.support import delivery, oss_upload
from tests.support.fake_ice import FakeIce
from tests.support.fake_oss import FakeOss
from tests.support.rtsp import RtspServer, make_test_video, rtsp_available


@pytest.fixture(scope="session")
def rtsp_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic 10 s 320x240 25 fps clips, GOP 25 (1 s), no B-frames: ``{"h264": .., "h265": ..}``.

    Short GOP and camera-like frame rate keep RTSP start-up short: DESCRIBE on a fresh mount
    waits for a keyframe, and FFmpeg's stream probing reads a fixed number of frames.
    Generated once per session (~0.5 s / ~1 s).
    """
    base = tmp_path_factory.mktemp("rtsp-videos")
    return {
        codec: make_test_video(base / f"gradient-{codec}.mp4", codec=codec, fps=25, gop=25)
        for codec in ("h264", "h265")
    }


@pytest.fixture
def rtsp_server() -> Iterator[Callable[..., RtspServer]]:
    """Factory: ``rtsp_server({"/cam1": path}, user=.., password=..)`` -> a *started* server.

    Skips the test (only) when :func:`rtsp.rtsp_available` says the server cannot run here;
    every server made through the factory is stopped at teardown, even after ``kill()``.
    """
    reason = rtsp_available()
    if reason is not None:
        pytest.skip(reason)
    servers: list[RtspServer] = []

    def make(mounts: dict[str, Any], **kwargs: Any) -> RtspServer:
        server = RtspServer(mounts, **kwargs)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()


# -- a gateway's delivery (tests.support.delivery): its bucket on a local OSS, its search library


@pytest.fixture(scope="module")
def _delivery_oss() -> Iterator[FakeOss]:
    with FakeOss(
        access_key_id=delivery.AK, access_key_secret=delivery.SK, region=delivery.REGION
    ) as server:
        server.create_bucket(delivery.BUCKET)
        yield server


@pytest.fixture
def oss(_delivery_oss: FakeOss) -> Iterator[FakeOss]:
    """The gateway's OSS (one server per test module); no fault is left for the next test."""
    yield _delivery_oss
    _delivery_oss.clear_faults()


@pytest.fixture
def ice() -> Iterator[FakeIce]:
    """The gateway's ICE, its search library made, one server per test."""
    server = FakeIce(access_key_id=delivery.AK, access_key_secret=delivery.SK)
    server.start()
    try:
        with IceClient(server.url, lambda: Credentials(delivery.AK, delivery.SK)) as client:
            init_library(client, delivery.cloud_settings(None, server), "Shared")
        yield server
    finally:
        server.close()


# -- uploads straight to a local OSS by an OssUploader (tests.support.oss_upload)


@pytest.fixture(scope="module")
def _upload_oss() -> Iterator[FakeOss]:
    with FakeOss() as server:
        server.create_bucket(oss_upload.BUCKET)
        yield server


@pytest.fixture
def oss_server(_upload_oss: FakeOss) -> Iterator[FakeOss]:
    """A local OSS (one per test module): every test starts with an empty request log and ends
    with no faults left."""
    _upload_oss.clear_requests()
    yield _upload_oss
    _upload_oss.clear_faults()


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "oss-checkpoints"


@pytest.fixture
def make_oss_uploader(oss_server: FakeOss, checkpoint_dir: Path) -> Callable[..., OssUploader]:
    """``make_oss_uploader(**options)`` -> an OssUploader to ``oss_server``; an option given
    replaces the default (``access_key_id``/``access_key_secret`` those of the credentials)."""

    def make(**kwargs: Any) -> OssUploader:
        creds = Credentials(
            kwargs.pop("access_key_id", oss_server.access_key_id),
            kwargs.pop("access_key_secret", oss_server.access_key_secret),
        )
        options: dict[str, Any] = {
            "endpoint": oss_server.endpoint,
            "region": oss_server.region,
            "bucket": oss_upload.BUCKET,
            "credentials": StaticCredentialSource(creds),
            "checkpoint_dir": checkpoint_dir,
            "multipart_threshold": oss_upload.THRESHOLD,
            "part_size": oss_upload.PART,
            "read_timeout": 10.0,
        }
        options.update(kwargs)
        return OssUploader(**options)

    return make
