"""Packets in, MP4 clips out: a time-bounded packet buffer and a stream-copy clip writer.

The camera's own compressed packets are remuxed, never re-encoded. The buffer always holds at
least the segmenter's horizon (pre-roll + min_event + a GOP or two), trimmed a whole GOP at a
time so that it always begins on a keyframe. A clip is written to `<name>.tmp` while open; on
close it is fsync'd, and the caller renames it once the catalog row is committed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import av

from agent import layout
from agent.capture.source import MediaPacket
from agent.durable import fsync_dir, fsync_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WrittenClip:
    tmp_path: Path
    path: Path  # final name, after the caller's rename
    start: float  # media seconds of the first frame
    end: float  # media seconds just after the last frame
    start_wall: float | None
    frames: int
    bytes: int


class PacketBuffer:
    """Recent packets, oldest first, always starting at a keyframe once one has arrived."""

    def __init__(self) -> None:
        self.packets: deque[MediaPacket] = deque()

    def push(self, pkt: MediaPacket) -> None:
        if not self.packets and not pkt.key:
            return  # nothing before the first keyframe can ever be played
        self.packets.append(pkt)

    def trim(self, horizon: float, keep_from: float | None = None) -> None:
        """Drop whole GOPs older than `horizon` seconds (and not needed from `keep_from` on)."""
        if not self.packets:
            return
        limit = self.packets[-1].t - horizon
        if keep_from is not None:
            limit = min(limit, keep_from)
        while True:
            nxt = next((i for i, p in enumerate(self.packets) if i and p.key), None)
            if nxt is None or self.packets[nxt].t > limit:
                return
            for _ in range(nxt):
                self.packets.popleft()

    def since(self, t: float) -> list[MediaPacket]:
        """Packets from the keyframe at `t` (or the first keyframe after it) on."""
        out: list[MediaPacket] = []
        for p in self.packets:
            if out or (p.key and p.t >= t - 1e-6):
                out.append(p)
        return out

    def since_last_keyframe(self) -> list[MediaPacket]:
        """The packets of the newest GOP: from its keyframe to the newest packet."""
        out: list[MediaPacket] = []
        for p in reversed(self.packets):
            out.append(p)
            if p.key:
                break
        out.reverse()
        return out

    def clear(self, keep_last_gop: bool = False) -> list[MediaPacket]:
        """Drop the packets; with `keep_last_gop`, all but the newest GOP's, which it returns."""
        kept = self.since_last_keyframe() if keep_last_gop else []
        self.packets = deque(kept)
        return kept

    def span(self) -> float:
        return self.packets[-1].t - self.packets[0].t if self.packets else 0.0


class ClipWriter:
    """One MP4 file being written from a stream template, timestamps rebased to start at 0."""

    def __init__(self, template: av.video.stream.VideoStream, path: Path) -> None:
        self.path = path
        self.tmp_path = layout.tmp_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(
            str(self.tmp_path), "w", format="mp4", options={"movflags": "+faststart"}
        )
        self.stream = self.container.add_stream_from_template(template)
        self.first: MediaPacket | None = None
        self.last: MediaPacket | None = None
        self.end_pts = 0  # latest presentation end: with B-frames, not the last packet's
        self.frames = 0

    def write(self, p: MediaPacket) -> None:
        if self.first is None:
            if not p.key:
                return
            self.first = p
        base = self.first.pts
        pkt = p.packet
        # The packet may still be decoded (a gate catch-up): its own timing is put back.
        own = pkt.stream, pkt.pts, pkt.dts, pkt.duration
        pkt.stream = self.stream
        pkt.pts = p.pts - base
        pkt.dts = p.dts - base
        pkt.duration = p.duration
        try:
            self.container.mux(pkt)
        finally:
            pkt.stream, pkt.pts, pkt.dts, pkt.duration = own
        self.end_pts = max(self.end_pts, p.pts + p.duration)
        self.last = p
        self.frames += 1

    def close(self) -> WrittenClip | None:
        """Finish the file and fsync it; None (and no file) if nothing was written."""
        self.container.close()
        if self.first is None or self.last is None:
            self.tmp_path.unlink(missing_ok=True)
            return None
        fsync_file(self.tmp_path)
        # The span in presentation time, on the session timeline (what a player shows).
        tb = self.first.time_base
        return WrittenClip(
            tmp_path=self.tmp_path,
            path=self.path,
            start=self.first.pts * tb,
            end=self.end_pts * tb,
            start_wall=self.first.wall,
            frames=self.frames,
            bytes=self.tmp_path.stat().st_size,
        )

    def abort(self) -> None:
        with contextlib.suppress(av.FFmpegError):
            self.container.close()
        self.tmp_path.unlink(missing_ok=True)


def publish(pairs: list[tuple[Path, Path]]) -> None:
    """Rename fsync'd temporary files to their final names and make the renames durable."""
    dirs = set()
    for tmp, final in pairs:
        os.replace(tmp, final)
        dirs.add(final.parent)
    for d in dirs:
        fsync_dir(d)
