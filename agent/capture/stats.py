"""A camera's live counters, for status."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class CameraStats:
    """Live counters for status; plain numbers, cheap to copy."""

    state: str = "starting"
    codec: str = ""
    width: int = 0
    height: int = 0
    packets: int = 0
    bytes: int = 0  # compressed video received
    last_packet_wall: float | None = None
    frames_decoded: int = 0
    frames_redecoded: int = 0  # packets decoded a second time (a catch-up that started over)
    frames_analysed: int = 0
    frames_skipped: int = 0  # not decoded: the gate was asleep
    gate: str = "off"  # the gate's state: asleep, why awake, or why it decodes everything
    gate_wakes: int = 0
    decode_errors: int = 0
    clips: int = 0
    clips_refused: int = 0  # events not recorded because the sink refused (disk full)
    last_motion_wall: float | None = None
    last_error: str | None = None
    connections: int = 0
    detect_on: str = "main"  # the stream motion is detected on: "main", or "sub" (detect_url)
    keyframe_frames_decoded: int = 0  # main-stream frames decoded for keyframe images only

    def received(self, size: int) -> None:
        """A packet of `size` bytes arrived now."""
        self.packets += 1
        self.bytes += size
        self.last_packet_wall = time.time()
