"""One connection of a camera: packets in, finished clips with keyframes out. The wiring of the
capture stages; each of them stays ignorant of the others.

Per packet, in this order:
1. the segmenter sees its time (it may end or split the open clip *before* this packet);
2. the packet goes into the buffer and, if a clip is open, into the clip (or beside it, while
   the clip's end waits for detection to look past it: agent/capture/segmenter.py);
3. detection (agent/capture/detection.py: gate, decoding, detector; or, with a `detect_url`,
   the sub-stream's verdicts: agent/capture/substream.py) looks at it;
4. each verdict goes to the segmenter (which may start a clip, taking the buffered packets),
   and frames with motion are offered as keyframe candidates (agent/capture/keyframes.py);
5. the buffer drops what neither pre-roll nor a catch-up can still need.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from agent.capture.clips import Clips, ClipSink, FinishedClip, Keyframe
from agent.capture.decoder import Decoder, luma_plane
from agent.capture.detection import Analysis, Detection, burst_gap
from agent.capture.jpeg import JpegImages
from agent.capture.keyframes import Candidates, Images, KeyframePicker, at_edge, quality, sharpness
from agent.capture.motion import MotionResult
from agent.capture.recorder import PacketBuffer
from agent.capture.segmenter import Decision, EndClip, Segmenter, SplitClip, StartClip
from agent.capture.source import Connection, MediaPacket
from agent.capture.stats import CameraStats
from agent.config import CameraConfig

__all__ = ["CameraStats", "ClipSink", "FinishedClip", "Keyframe", "Owner", "Session"]

log = logging.getLogger(__name__)


class Owner(Protocol):
    """What a session needs of the camera it runs for (agent/capture/pipeline.py)."""

    cam: CameraConfig
    sink: ClipSink
    stats: CameraStats
    stop: threading.Event
    on_clip: Callable[[FinishedClip], None] | None


class Detect(Protocol):
    """Where a session's verdicts come from: its own decoding (agent/capture/detection.py) or
    a sub-stream (agent/capture/substream.py's SubstreamFeed)."""

    def packet(self, mp: MediaPacket, busy: bool = False, event: bool = False) -> None: ...
    def settled(self) -> float | None: ...
    def keep_from(self) -> float | None: ...
    def restart(self, *, keep_decoder: bool = False) -> None: ...


class StreamChanged(Exception):
    """The stream's parameters changed under us; the connection must be opened afresh."""


class Session:
    """One connection's worth of state: buffer, segmenter, detection, candidates, open clip."""

    def __init__(self, pipe: Owner, conn: Connection, images: Images | None = None) -> None:
        self.cam = cam = pipe.cam
        self.stats = stats = pipe.stats
        self.conn = conn
        self.decoder = Decoder(conn.stream.codec_context, cam.name, stats)
        self.buffer = PacketBuffer()
        self.burst_gap = burst_gap(cam)
        self.segmenter = Segmenter(cam.clip, self.burst_gap)
        self.candidates = Candidates(
            KeyframePicker(cam.clip.keyframes), images or JpegImages(cam.clip.keyframe_size)
        )
        self.clips = Clips(cam, pipe.sink, stats, conn, pipe.on_clip)
        self.current: MediaPacket | None = None  # the packet being processed
        self.detect: Detect = Detection(
            cam,
            self.decoder,
            self.buffer,
            stats,
            self.analysed,
            luma_plane,
            lambda: self.restart(keep_decoder=True),
        )
        stats.codec = conn.codec
        stats.width, stats.height = conn.size

    def run(self) -> None:
        try:
            for mp in self.conn.packets:
                if mp.discontinuity:
                    log.info("%s: timestamp jump at %.2f s; closing the clip", self.cam.name, mp.t)
                    self.restart()
                self.packet(mp)
        finally:
            # End of stream, stop request or error: what was recorded becomes a clip.
            self._apply(self.segmenter.finish())  # ends any open clip
            # Detection calls back into the session, a reference cycle: broken here, the
            # connection's decoder (~15 MB of frames at 1080p) goes now, not at a later full GC.
            del self.detect

    def packet(self, mp: MediaPacket) -> None:
        self.stats.received(mp.packet.size)
        self.current = mp
        self._apply(self.segmenter.packet(mp.t, mp.key, self.detect.settled()))
        self.buffer.push(mp)
        self.clips.hold(mp)
        self.clips.flush(self.segmenter.end)
        self.detect.packet(mp, event=self.segmenter.recording)
        self.buffer.trim(self.segmenter.horizon(), self.detect.keep_from())

    def restart(self, *, keep_decoder: bool = False) -> None:
        """Start detection and clips over (a timestamp jump, a new resolution). Through a
        resolution change the decoder carries on, and the new size's GOP stays buffered (a
        clip may start at its keyframe): it has just decoded that keyframe, and starting over
        would lose the rest of the GOP."""
        self._apply(self.segmenter.finish())
        self.segmenter = Segmenter(self.cam.clip, self.burst_gap)
        for p in self.buffer.clear(keep_last_gop=keep_decoder):
            self.segmenter.packet(p.t, p.key)
        self.candidates.clear()
        self.detect.restart(keep_decoder=keep_decoder)

    def analysed(self, a: Analysis) -> None:
        """A verdict of this stream's own detection; a frame with motion may be a keyframe."""
        r = a.result
        self.verdict(a.packet.t, r, a.packet.wall)
        if r.motion and not r.global_change:
            assert a.detector.last_frame is not None
            good = r.steady and not at_edge(r.box)  # else a fallback: cut off, or light changing
            score = quality(r.score, sharpness(a.luma, r.box), good)
            self.candidates.offer(r.t, score, a.detector.last_frame.copy, a.frame, good, r.steady)

    def verdict(self, t: float, r: MotionResult, wall: float | None) -> None:
        """A motion verdict at media time `t` goes to the segmenter and the open clip."""
        if r.motion:
            self.stats.last_motion_wall = wall
        self._apply(self.segmenter.motion(t, r.motion))
        self.clips.score(r.score)

    def _apply(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if isinstance(d, StartClip):
                self._open(d.at, d.event_start)
            elif isinstance(d, SplitClip):
                event_end = self.segmenter.last_motion if self.segmenter.last_motion else d.at
                self.clips.flush(d.at)
                self.clips.close(min(event_end, d.at), self.candidates)
                self._open(d.at, d.at, from_buffer=False)  # the split keyframe is this packet
            elif isinstance(d, EndClip):
                self.clips.flush(d.at)
                self.clips.close(d.event_end, self.candidates)

    def _open(self, at: float, event_start: float, *, from_buffer: bool = True) -> None:
        """Open a clip at keyframe `at`: from the buffer (pre-roll), or from the next packet."""
        if self.clips.refused(event_start):
            return
        packets = self.buffer.since(at) if from_buffer else []
        if from_buffer and not packets:
            log.warning(
                "%s: no keyframe buffered at %.2f s; the clip starts at the next one",
                self.cam.name,
                at,
            )
        first = packets[0] if packets else self.current
        assert first is not None, "clips open while a packet is being processed"
        self.clips.open(packets, first, event_start)
