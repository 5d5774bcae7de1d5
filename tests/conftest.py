"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rtsp import RtspServer, make_test_video, rtsp_available


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
