"""One camera: its source's connections, each run by a session (agent/capture/session.py), or
by a main-stream and a sub-stream session when motion is detected on a `detect_url`
(agent/capture/substream.py)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from agent.capture.clips import ClipSink, FinishedClip, Keyframe
from agent.capture.session import Session, StreamChanged
from agent.capture.source import Source
from agent.capture.stats import CameraStats
from agent.capture.substream import SubstreamDetection, run_with_substream
from agent.config import CameraConfig

__all__ = ["CameraPipeline", "CameraStats", "ClipSink", "FinishedClip", "Keyframe", "snapshot"]

log = logging.getLogger(__name__)


class CameraPipeline:
    def __init__(
        self,
        cam: CameraConfig,
        sink: ClipSink,
        stop: threading.Event | None = None,
        on_clip: Callable[[FinishedClip], None] | None = None,
    ) -> None:
        self.cam = cam
        self.sink = sink
        self.stop = stop or threading.Event()
        self.on_clip = on_clip
        self.source = Source(cam, self.stop)
        self.stats = CameraStats()
        self.substream: SubstreamDetection | None = None  # the sub-stream's detection

    def run(self) -> None:
        """Run until stopped (live) or until the file ends (files without `loop`)."""
        if self.cam.detect_url:
            run_with_substream(self)
            return
        for conn in self.source.connections():
            self.stats.connections += 1
            self.stats.state = "streaming"
            try:
                Session(self, conn).run()
            except StreamChanged as exc:
                self.source.last_error = str(exc)
                log.warning("%s: %s; reconnecting", self.cam.name, exc)
        self.stats.state = self.source.state


def snapshot(pipe: CameraPipeline) -> dict:
    """The camera's status as plain data (for the supervisor's status model)."""
    out = dataclasses.asdict(pipe.stats)
    source = pipe.source
    out["state"] = source.state
    out["last_error"] = source.last_error or out["last_error"]
    if not out["last_error"] and out["decode_errors"] and not out["frames_decoded"]:
        # Packets arrive but none decodes: status must say so, not just show 0 fps.
        out["last_error"] = (
            f"{out['decode_errors']} packets and no frame decoded: the stream lacks its "
            "parameter sets (SPS/PPS) or is corrupt"
        )
    out["corrupt_packets"] = source.corrupt_packets
    if pipe.substream is not None:
        out["substream"] = pipe.substream.status()
    return out
