"""The one owner of PyAV decoding for a connection: packets in, (packet, frame) pairs out.

The decoder keeps its place. While the gate sleeps only keyframes are fed to it; when the gate
wakes in the middle of a GOP the pipeline hands it the buffered packets from the GOP's keyframe
on, and it decodes only those it has not decoded yet: the keyframe and whatever was decoded
before the gate fell asleep are not decoded again. It starts over (flush, then from the
keyframe) only when its state cannot continue: the packets handed to it begin at another
keyframe, or it had to be drained.

Frames come out in presentation order, later than their packets when the stream has B-frames;
each is paired with the packet that carried it (by pts), so analysis uses that frame's own time.
A lone keyframe of such a stream (`still`) comes out only when the decoder is drained, which
costs its state: the next wake decodes that keyframe once more.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Protocol

import av
import numpy as np

from agent.capture.source import MediaPacket

log = logging.getLogger(__name__)

Decoded = tuple[MediaPacket, av.VideoFrame]
RUNS = 64  # runs of consecutive packets remembered, to count those decoded a second time


class Counters(Protocol):
    """Where the decoder counts its work (the camera's stats)."""

    frames_decoded: int
    frames_redecoded: int  # packets fed again (a catch-up that had to start over)
    decode_errors: int  # packets the decoder refused (or drains that failed)


class Decoder:
    def __init__(self, ctx: av.codec.context.CodecContext, name: str, stats: Counters) -> None:
        self.ctx = ctx
        self.name = name
        self.stats = stats
        self.first: MediaPacket | None = None  # the keyframe the decoder's state runs from
        self.last: MediaPacket | None = None  # the last packet fed in that run
        self.pending: dict[int, MediaPacket] = {}  # raw pts -> fed packet whose frame is due
        self.runs: deque[list[int]] = deque(maxlen=RUNS)  # [first, last] seq of recent runs fed

    def follows(self, mp: MediaPacket) -> bool:
        """Can `mp` be fed as it is: a keyframe, or the packet right after the last one fed?"""
        return mp.key or (self.last is not None and mp.seq == self.last.seq + 1)

    def continues(self, packets: Sequence[MediaPacket]) -> bool:
        """Would `decode(packets)` carry on from the decoder's state (no packet decoded twice)?"""
        return bool(packets) and packets[0] is self.first and self._after_last(packets) >= 0

    def seen(self, mp: MediaPacket) -> bool:
        """Was `mp` decoded already (recently)?"""
        return any(a <= mp.seq <= b for a, b in self.runs)

    def decode(self, packets: Sequence[MediaPacket]) -> Iterator[Decoded]:
        """Decode consecutive packets that begin at a keyframe (or with the packet after the last
        one fed), skipping those already decoded. Yields the frames as they come out.

        One at a time, on purpose: libavcodec's frame pool grows to the most frames alive at
        once and never shrinks, so a catch-up that held a GOP's frames in a list kept ~3 MB per
        1080p frame of it for good. Consume it whole before feeding the decoder again."""
        if not packets:
            return
        start = self._after_last(packets) if packets[0] is self.first else -1
        if start < 0:
            if not self.follows(packets[0]):
                self.reset()
            start = 0
        for mp in packets[start:]:
            yield from self._feed(mp)

    def still(self, mp: MediaPacket) -> list[Decoded]:
        """Decode a keyframe now, even where frames leave the decoder late (B-frames): then
        the decoder is drained and starts over at the next keyframe."""
        out = self._feed(mp)
        if any(p is mp for p, _ in out):
            return out
        try:
            out += self._pair(self.ctx.decode(None))
        except av.FFmpegError as exc:
            self._error()
            log.debug("%s: drain at %.2f s: %s", self.name, mp.t, exc)
        self.reset()
        return out

    def reset(self) -> None:
        """Forget the decoder's state (the next packet fed must be a keyframe)."""
        self.ctx.flush_buffers()
        self.first = self.last = None
        self.pending.clear()

    # -- internals -----------------------------------------------------------------------------
    def _after_last(self, packets: Sequence[MediaPacket]) -> int:
        if self.last is None:
            return -1
        for i in range(len(packets) - 1, -1, -1):
            if packets[i] is self.last:
                return i + 1
        return -1

    def _feed(self, mp: MediaPacket) -> list[Decoded]:
        if mp.key:
            self.first = mp
        elif self.first is None:
            return []  # no keyframe to decode from (before the first one, or after a reset)
        if self.seen(mp):
            self.stats.frames_redecoded += 1
        if self.last is not None and self.runs and mp.seq == self.last.seq + 1:
            self.runs[-1][1] = mp.seq
        else:
            self.runs.append([mp.seq, mp.seq])
        self.last = mp
        self.pending[mp.packet.pts if mp.packet.pts is not None else mp.seq] = mp
        try:
            frames = self.ctx.decode(mp.packet)
        except av.FFmpegError as exc:
            self._error()
            if not isinstance(exc, av.error.InvalidDataError):
                log.debug("%s: decode error at %.2f s: %s", self.name, mp.t, exc)
            return []
        return self._pair(frames)

    def _error(self) -> None:
        self.stats.decode_errors += 1

    def _pair(self, frames: list[av.VideoFrame]) -> list[Decoded]:
        out: list[Decoded] = []
        self.stats.frames_decoded += len(frames)
        for frame in frames:
            mp = self.pending.pop(frame.pts, None) if frame.pts is not None else None
            if mp is None:  # no pts to match (raw streams): the oldest packet still due
                if not self.pending:
                    continue
                mp = self.pending.pop(next(iter(self.pending)))
            if frame.pts is not None:  # frames come out in pts order: older ones never will
                for pts in [p for p in self.pending if p < frame.pts]:
                    del self.pending[pts]
            out.append((mp, frame))
        return out


LUMA_FORMATS = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray")


def luma_plane(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane as a zero-copy (height, width) view of the decoder's buffer.

    8-bit YUV formats carry luma in plane 0 as is; anything else (10-bit HEVC, say) is converted.
    """
    if frame.format.name not in LUMA_FORMATS:
        frame = frame.reformat(format="gray")
    plane = frame.planes[0]
    buf = np.frombuffer(plane, np.uint8)
    return buf.reshape(plane.height, plane.line_size)[:, : plane.width]
