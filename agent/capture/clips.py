"""The clip a connection is writing: opened at a keyframe (pre-roll from the buffer), packets
held past the event's end until detection has settled it, closed into a `FinishedClip` with
its keyframe images, handed to the sink (the spool) and only then given its final names.

A clip that cannot be written or catalogued (a full disk) is lost alone: its partial files go,
the error is logged and shown in status, and the camera carries on.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent import layout
from agent.capture import jpeg
from agent.capture.keyframes import Candidates
from agent.capture.recorder import ClipWriter, WrittenClip, publish
from agent.capture.source import Connection, MediaPacket
from agent.capture.stats import CameraStats
from agent.config import CameraConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Keyframe:
    path: Path  # final name
    tmp_path: Path
    t: float  # media seconds


@dataclass(frozen=True)
class FinishedClip:
    camera: str
    clip_id: str
    file: WrittenClip
    event_start: float
    event_end: float
    peak_score: float
    mean_score: float
    codec: str
    width: int
    height: int
    keyframes: tuple[Keyframe, ...]

    def publish(self) -> None:
        """Give the fsync'd files their final names (after the catalog has them)."""
        publish(
            [(self.file.tmp_path, self.file.path)] + [(k.tmp_path, k.path) for k in self.keyframes]
        )


class ClipSink(Protocol):
    def name_clip(self, camera: str, start: float, start_wall: float | None) -> tuple[str, Path]:
        """A clip id and the final path of its MP4 file."""

    def deliver(self, clip: FinishedClip) -> None:
        """Catalogue the clip and publish its files. Must not lose it once it returns."""

    def refusal(self) -> str | None:
        """Why no new clip may be cut now (the disk is full), or None."""


class _OpenClip:
    def __init__(self, writer: ClipWriter, clip_id: str, event_start: float) -> None:
        self.writer = writer
        self.clip_id = clip_id
        self.event_start = event_start
        self.scores: list[float] = []
        self.held: deque[MediaPacket] = deque()  # past the event's end, until it is settled


class Clips:
    """The clip being written for one connection, if any."""

    def __init__(
        self,
        cam: CameraConfig,
        sink: ClipSink,
        stats: CameraStats,
        conn: Connection,
        on_clip: Callable[[FinishedClip], None] | None = None,
    ) -> None:
        self.cam = cam
        self.sink = sink
        self.stats = stats
        self.conn = conn
        self.on_clip = on_clip
        self.clip: _OpenClip | None = None

    def refused(self, event_start: float) -> bool:
        """May no clip be cut now (the sink refuses: a full disk)? Counted and logged."""
        refusal = self.sink.refusal()
        if refusal:
            self.stats.clips_refused += 1
            log.error("%s: motion at %.1f s not recorded: %s", self.cam.name, event_start, refusal)
        return bool(refusal)

    def open(self, packets: list[MediaPacket], first: MediaPacket, event_start: float) -> None:
        """Open a clip whose first packet is `first`, writing `packets` (the pre-roll)."""
        clip_id, path = self.sink.name_clip(self.cam.name, first.t, first.wall)
        try:
            writer = ClipWriter(self.conn.stream, path)
        except OSError as exc:
            self._discard(None, exc, clip_id)
            return
        self.clip = _OpenClip(writer, clip_id, event_start)
        try:
            for p in packets:
                writer.write(p)
        except OSError as exc:
            self._discard(self.clip, exc)

    def hold(self, mp: MediaPacket) -> None:
        """A packet for the open clip, written once it lies before the clip's end."""
        if self.clip is not None:
            self.clip.held.append(mp)

    def score(self, score: float) -> None:
        if self.clip is not None:
            self.clip.scores.append(score)

    def flush(self, until: float) -> None:
        """Write the open clip's held packets, in order, up to the first at or after `until`."""
        clip = self.clip
        if clip is None:
            return
        try:
            while clip.held and clip.held[0].t < until:
                clip.writer.write(clip.held.popleft())
        except OSError as exc:  # a full disk: this clip is lost, never the camera
            self._discard(clip, exc)

    def close(self, event_end: float, candidates: Candidates) -> None:
        """Close the open clip (the event ended at `event_end`), with its keyframe images."""
        clip = self.clip
        try:
            self._finish(event_end, candidates)
        except OSError as exc:
            self._discard(clip, exc)

    # -- internals -----------------------------------------------------------------------------
    def _discard(self, clip: _OpenClip | None, exc: OSError, clip_id: str = "") -> None:
        self.clip = None
        if clip is not None:
            clip_id = clip.clip_id
            clip.writer.abort()
            path = clip.writer.path
            for tmp in path.parent.glob(layout.keyframe_tmp_glob(path)):
                tmp.unlink(missing_ok=True)
        self.stats.clips_refused += 1
        self.stats.last_error = f"clip {clip_id} not recorded: {exc}"
        log.error("%s: clip %s not recorded: %s", self.cam.name, clip_id, exc)

    def _finish(self, event_end: float, candidates: Candidates) -> None:
        clip, self.clip = self.clip, None
        if clip is None:
            return
        written = clip.writer.close()
        if written is None:
            return
        event_start = min(max(clip.event_start, written.start), written.end)
        event_end = min(max(event_end, event_start), written.end)
        keyframes = []
        for t, image in candidates.chosen(written.start, written.end):
            final = layout.keyframe_path(written.path, len(keyframes))
            tmp = layout.tmp_path(final)
            if isinstance(image, bytes):
                jpeg.write_file(image, tmp)
            else:
                jpeg.write_jpeg(image, tmp, self.cam.clip.keyframe_size)
            keyframes.append(Keyframe(final, tmp, t))
        candidates.drop_before(written.end)
        scores = clip.scores or [0.0]
        finished = FinishedClip(
            camera=self.cam.name,
            clip_id=clip.clip_id,
            file=written,
            event_start=event_start,
            event_end=event_end,
            peak_score=float(max(scores)),
            mean_score=float(sum(scores) / len(scores)),
            codec=self.conn.codec,
            width=self.stats.width,
            height=self.stats.height,
            keyframes=tuple(keyframes),
        )
        self.sink.deliver(finished)
        self.stats.clips += 1
        log.info(
            "%s: clip %s %.1f-%.1f s (%d frames, %d keyframes)",
            self.cam.name,
            clip.clip_id,
            written.start,
            written.end,
            written.frames,
            len(keyframes),
        )
        if self.on_clip:
            self.on_clip(finished)
