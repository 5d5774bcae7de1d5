"""Motion detection on a camera's sub-stream (`detect_url`) while clips come from its main one.

Two connections to one camera, each reconnecting on its own (agent/capture/source.py):
- the low-resolution *sub-stream* runs in a thread of its own through the same buffer, gate,
  decoder and detector a camera's only stream gets (`_SubConnection`: agent/capture/
  detection.py's Detection); its verdicts go into `Verdicts` instead of to a segmenter;
- the *main stream* runs in the camera's loop, in the same session as without a sub-stream
  (agent/capture/session.py): demuxed, buffered, segmented and cut into clips, but its
  verdicts come from the sub-stream (`SubstreamFeed`) and it is never decoded, except for the
  GOPs of the keyframe images a clip keeps (`GopImages`).

Alignment is by wall-clock time. Each source stamps its packets with a wall time: media time
plus the least arrival delay seen over the last minute (live, `WallClock`), or a shared origin
+ media time (two files: exact). A verdict at sub-stream wall time `w` applies to the main
stream at media time `w - (wall - t)` of the main packet in hand. The error is the difference
between the two streams' least delivery latencies (the same encoder feeds both; on a LAN a few
ms), more in the first seconds of a connection (FFmpeg's probing hands over its first packets
in a burst) or when one stream re-anchors after a stall and the other does not. Pre-roll and
post-roll (seconds) absorb it.

Order: the main packet at wall `w` is handled once the sub-stream has been processed up to `w`
(the main loop waits for it), so the segmenter sees a packet, then the verdicts up to its time,
as with one stream; verdicts from a gate catch-up arrive late in both cases alike.

Fallback: while the sub-stream is down (cannot connect, stalled, ended) or has not reached
the main stream's time within DETECT_WAIT s, the main session detects on its own stream
(decoding it, gate included) from the keyframe of its current GOP on, and goes back to the
sub-stream as soon as that has caught up again. `stats.detect_on` says which.

Keyframe images: a candidate holds references to the main stream's buffered packets from its
GOP's keyframe to its instant (no copies; the pool is small); only the chosen ones are decoded,
by a decoder of their own, when the clip closes. Candidates are taken within IMAGE_REACH s of
a main-stream keyframe (a few frames to decode each, instead of half a GOP on average): the
images of a 2 s GOP come from its first 0.3 s, still spread over the event by the picker.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import av
import numpy as np

from agent.capture.decoder import Decoder, luma_plane
from agent.capture.detection import Analysis, Detection, burst_gap
from agent.capture.jpeg import JpegImages
from agent.capture.keyframes import quality, sharpness
from agent.capture.motion import MotionResult
from agent.capture.recorder import PacketBuffer
from agent.capture.segmenter import horizon
from agent.capture.session import Owner, Session, StreamChanged
from agent.capture.source import Connection, MediaPacket, Source, SourceError
from agent.capture.stats import CameraStats
from agent.config import redact

log = logging.getLogger(__name__)

DETECT_WAIT = 3.0  # s a live main stream waits for the sub-stream to reach it before falling back
AHEAD = 10.0  # s the sub-stream of a file read as fast as possible may run ahead of the main
IMAGE_REACH = 0.3  # s after a main-stream keyframe a keyframe image may lie (decoding cost)
MAX_QUEUED = 1000  # verdicts held for the main loop (live: it is never far behind)
UP = ("connecting", "streaming")  # sub-stream source states that may still deliver


class MainCamera(Owner, Protocol):
    """What the sub-stream's parts need of the camera (agent/capture/pipeline.py)."""

    source: Source
    substream: SubstreamDetection | None


@dataclass(frozen=True)
class Verdict:
    """One analysis of a sub-stream frame."""

    wall: float  # when that frame was captured
    result: MotionResult  # result.t: the sub-stream's media time
    sharp: float = 0.0  # sharpness of the changed region (motion only)
    thumb: np.ndarray | None = None  # the analysis image, for keyframe likeness (motion only)


class Verdicts:
    """The hand-off between the sub-stream's thread and the camera's loop, in wall time."""

    def __init__(self, state: Callable[[], str], paced: bool = True) -> None:
        self.state = state  # the sub-stream source's state
        self.paced = paced  # False: two files read as fast as possible (no time limit on waits)
        self.cond = threading.Condition()
        self.queue: deque[Verdict] = deque(maxlen=MAX_QUEUED)
        self.reached = -math.inf  # wall time up to which the sub-stream has been processed
        self.ended = False  # the sub-stream's thread is done
        self.main_wall = -math.inf  # how far the main stream has been handled
        self.recording = False  # the main stream has a clip open: the sub's gate stays awake

    # -- the sub-stream's side
    def put(self, v: Verdict) -> None:
        with self.cond:
            self.queue.append(v)

    def advance(self, wall: float, stop: threading.Event) -> None:
        """The sub-stream has been processed up to `wall`. Unpaced files: wait while it runs
        more than AHEAD s in front of the main stream (memory stays bounded)."""
        with self.cond:
            self.reached = max(self.reached, wall)
            self.cond.notify_all()
            while not self.paced and wall > self.main_wall + AHEAD and not stop.is_set():
                self.cond.wait(0.5)

    def end(self) -> None:
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    # -- the main stream's side
    def note_main(self, wall: float, recording: bool) -> None:
        with self.cond:
            self.main_wall, self.recording = wall, recording
            if not self.paced:
                self.cond.notify_all()

    def up(self) -> bool:
        return not self.ended and self.state() in UP

    def ready(self, wall: float, since: float) -> bool:
        """Is the sub-stream back: up, moved on from `since`, and within reach of `wall`
        (paced: DETECT_WAIT s; the two streams' wall clocks may be anchored that far apart)?"""
        reach = DETECT_WAIT if self.paced else 0.0
        return self.up() and self.reached > since and self.reached >= wall - reach

    def wait(self, wall: float, stop: threading.Event) -> bool:
        """Wait until the sub-stream has been processed up to `wall`: True; False (at once)
        when it is down, or after DETECT_WAIT s (paced streams) when it lags behind."""
        deadline = time.monotonic() + DETECT_WAIT if self.paced else math.inf
        with self.cond:
            while self.reached < wall:
                left = deadline - time.monotonic()
                if not self.up() or stop.is_set() or left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
            return True

    def take(self, wall: float) -> list[Verdict]:
        """The queued verdicts up to `wall`, in the order they came."""
        out = []
        with self.cond:
            while self.queue and self.queue[0].wall <= wall:
                out.append(self.queue.popleft())
        return out

    def drop(self, wall: float) -> None:
        """Forget the verdicts up to `wall` (the main stream was analysed there itself)."""
        self.take(wall)


class SubstreamDetection:
    """The sub-stream's connections and detection, in a thread of its own."""

    def __init__(self, pipe: MainCamera) -> None:
        main = pipe.cam
        self.cam = dataclasses.replace(main, url=main.detect_url, detect_url="")
        self.stop = threading.Event()  # set when the camera's loop ends
        self.source = Source(self.cam, self.stop)
        self.stats = CameraStats()
        paced = not (main.is_file and self.cam.is_file and not main.realtime)
        self.verdicts = Verdicts(lambda: self.source.state, paced)
        self.thread = threading.Thread(target=self._run, name=f"{main.name}-sub", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        with self.verdicts.cond:
            self.verdicts.cond.notify_all()
        self.thread.join()

    def status(self) -> dict:
        """The sub-stream's part of the camera's status."""
        s = self.stats
        return {
            "url": redact(self.cam.url),
            "state": self.source.state,
            "last_error": self.source.last_error or s.last_error,
            "codec": s.codec,
            "width": s.width,
            "height": s.height,
            "packets": s.packets,
            "frames_decoded": s.frames_decoded,
            "frames_analysed": s.frames_analysed,
            "gate": s.gate,
            "connections": s.connections,
        }

    def _run(self) -> None:
        try:
            for conn in self.source.connections():
                self.stats.connections += 1
                try:
                    _SubConnection(self, conn).run()
                except StreamChanged as exc:
                    self.source.last_error = str(exc)
        except SourceError as exc:  # a file that cannot be read: the main stream detects
            log.warning("%s: sub-stream: %s; detecting on the main stream", self.cam.name, exc)
        except Exception:  # never take the camera down: the main stream can detect itself
            log.exception("%s: sub-stream detection failed", self.cam.name)
            self.source.state = "failed"
        finally:
            self.verdicts.end()


class _SubConnection:
    """One sub-stream connection: buffer, gate, decoding and detection as for a camera's own
    stream; verdicts out to the main stream instead of to a segmenter."""

    def __init__(self, sub: SubstreamDetection, conn: Connection) -> None:
        self.sub = sub
        self.conn = conn
        self.stats = stats = sub.stats
        self.buffer = PacketBuffer()
        self.detection = Detection(
            sub.cam,
            Decoder(conn.stream.codec_context, sub.cam.name, stats),
            self.buffer,
            stats,
            self.analysed,
            luma_plane,
            lambda: self.restart(keep_decoder=True),
        )
        self.burst_gap = burst_gap(sub.cam)
        self.last_key: float | None = None
        self.gop = 0.0  # the last keyframe interval (how far back the buffer reaches)
        stats.codec = conn.codec
        stats.width, stats.height = conn.size

    def run(self) -> None:
        try:
            self._run()
        finally:
            del self.detection  # it calls back into this object: no cycle to keep its decoder

    def _run(self) -> None:
        stats, verdicts = self.stats, self.sub.verdicts
        for mp in self.conn.packets:
            if mp.discontinuity:
                self.restart()
            stats.received(mp.packet.size)
            if mp.key:
                if self.last_key is not None:
                    self.gop = mp.t - self.last_key
                self.last_key = mp.t
            self.buffer.push(mp)
            # The main stream's clip keeps the gate awake: its end cannot wait for this stream.
            self.detection.packet(mp, verdicts.recording)
            reach = horizon(self.sub.cam.clip, self.burst_gap, self.gop)
            self.buffer.trim(reach, self.detection.keep_from())
            assert mp.wall is not None
            verdicts.advance(mp.wall, self.sub.stop)

    def restart(self, *, keep_decoder: bool = False) -> None:
        """A timestamp jump or a new resolution (then the new size's GOP stays buffered)."""
        kept = self.buffer.clear(keep_last_gop=keep_decoder)
        self.last_key = kept[0].t if kept else None
        self.gop = 0.0
        self.detection.restart(keep_decoder=keep_decoder)

    def analysed(self, a: Analysis) -> None:
        r = a.result
        sharp, thumb = 0.0, None
        if r.motion and not r.global_change:
            assert a.detector.last_frame is not None
            sharp, thumb = sharpness(a.luma, r.box), a.detector.last_frame.copy()
        assert a.packet.wall is not None
        self.sub.verdicts.put(Verdict(a.packet.wall, r, sharp, thumb))


@dataclass(frozen=True)
class GopRef:
    """A main-stream frame, as the buffered packets from its GOP's keyframe to it."""

    packets: tuple[MediaPacket, ...]

    @property
    def t(self) -> float:
        return self.packets[-1].t


class SubstreamFeed:
    """A main-stream session's detection with a sub-stream: the sub-stream's verdicts while it
    is there; the session's own detection (decoding the main stream) while it is not."""

    def __init__(self, session: Session, pipe: MainCamera, sub: SubstreamDetection) -> None:
        self.session = session
        self.pipe = pipe
        self.own: Detection = session.detect  # type: ignore[assignment]
        self.verdicts = sub.verdicts
        self.on_sub = True
        self.left_at = -math.inf  # how far the sub-stream had been processed when it was left
        self.started = False
        pipe.stats.detect_on = "sub"

    def packet(self, mp: MediaPacket, busy: bool = False, event: bool = False) -> None:
        v = self.verdicts
        assert mp.wall is not None
        v.note_main(mp.wall, self.session.segmenter.recording)
        if not self.started:  # what the sub-stream saw before this connection is not ours
            self.started = True
            v.drop(mp.wall - 1.0 / self.pipe.cam.motion.detect_fps)
        if self.on_sub:
            if v.wait(mp.wall, self.pipe.stop):
                self._feed(v.take(mp.wall), mp)
            elif not self.pipe.stop.is_set():  # stopping: the loop ends with this packet
                self._fall_back()
            return
        if v.ready(mp.wall, self.left_at):
            self.on_sub = True
            self.pipe.stats.detect_on = "sub"
            log.info("%s: the sub-stream is back; detecting on it", self.pipe.cam.name)
            v.drop(self.last_analysed_wall(mp))
            self._feed(v.take(mp.wall), mp)
            return
        v.drop(mp.wall)
        self.own.packet(mp, busy, event)

    def settled(self) -> float | None:
        return None if self.on_sub else self.own.settled()

    def keep_from(self) -> float | None:
        return self.own.keep_from()

    def restart(self, *, keep_decoder: bool = False) -> None:
        self.own.restart(keep_decoder=keep_decoder)

    def last_analysed_wall(self, mp: MediaPacket) -> float:
        """Wall time of the main stream's last own analysis (verdicts before it are stale)."""
        det = self.own.detector
        last = det.last_t if det is not None else None
        return mp.wall - mp.t + last if last is not None and mp.wall is not None else -math.inf

    def _fall_back(self) -> None:
        """Detect on the main stream from now on: its current GOP decoded from the keyframe."""
        self.on_sub = False
        self.left_at = self.verdicts.reached
        self.pipe.stats.detect_on = "main"
        why = self.pipe.substream.source.last_error if self.pipe.substream else None
        log.warning(
            "%s: sub-stream %s (%s); detecting on the main stream",
            self.pipe.cam.name,
            "down" if not self.verdicts.up() else "behind",
            why or "no packets",
        )
        self.own.start_over()  # a fresh background at the main stream's resolution
        buffered = self.session.buffer.packets
        key = next((p.t for p in reversed(buffered) if p.key), None)
        if key is not None:
            self.own.catch_up(key, "sub-stream down")

    def _feed(self, verdicts: list[Verdict], mp: MediaPacket) -> None:
        """Sub-stream verdicts into the session, at the main stream's media times."""
        assert mp.wall is not None
        offset = mp.wall - mp.t
        session = self.session
        cands = session.candidates
        for v in verdicts:
            t, r = v.wall - offset, v.result
            self.pipe.stats.frames_analysed += 1
            session.verdict(t, r, v.wall)
            if v.thumb is not None:
                ref = _gop_ref(session.buffer, t)
                # Near its GOP's keyframe, an image costs a few frames to decode, not a GOP;
                # elsewhere only while there is no candidate at all.
                near = ref is not None and ref.t - ref.packets[0].t <= IMAGE_REACH + 1e-6
                if ref is not None and (near or cands.empty):
                    score = quality(r.score, v.sharp)
                    cands.offer(ref.t, score, lambda thumb=v.thumb: thumb, ref)


def _gop_ref(buffer: PacketBuffer, t: float) -> GopRef | None:
    """The buffered main-stream frame nearest `t`, with its GOP back to the keyframe."""
    gop: list[MediaPacket] = []
    for p in buffer.packets:
        if p.t > t + 0.5 * p.duration * p.time_base and gop:
            break
        if p.key:
            gop = [p]
        elif gop:
            gop.append(p)
    return GopRef(tuple(gop)) if gop else None


class GopImages:
    """Keyframe candidates of a main stream that is not decoded: kept as packets (`GopRef`),
    decoded by a decoder of their own once chosen; frames of its own decoding (while the
    sub-stream is down) as JPEGs."""

    def __init__(self, conn: Connection, stats: CameraStats, name: str, max_side: int) -> None:
        self.conn = conn
        self.stats = stats
        self.name = name
        self.jpegs = JpegImages(max_side)
        self.ctx: av.codec.context.CodecContext | None = None

    def prepare(self, image):
        return image if isinstance(image, GopRef) else self.jpegs.prepare(image)

    def image(self, kept) -> av.VideoFrame | bytes | None:
        if not isinstance(kept, GopRef):
            return kept
        if self.ctx is None:
            template = self.conn.stream.codec_context
            ctx = av.CodecContext.create(template.name, "r")
            ctx.extradata = template.extradata
            ctx.thread_count = 1
            self.ctx = ctx
        ctx = self.ctx
        ctx.flush_buffers()
        frames: list[av.VideoFrame] = []
        try:
            for p in kept.packets:
                frames += ctx.decode(p.packet)
            frames += ctx.decode(None)
        except av.FFmpegError as exc:
            log.debug("%s: keyframe image at %.2f s: %s", self.name, kept.t, exc)
        ctx.flush_buffers()
        self.stats.keyframe_frames_decoded += len(frames)
        if not frames:
            log.warning("%s: no keyframe image at %.2f s: it did not decode", self.name, kept.t)
            return None
        # Frames come out in presentation order: the wanted one is its packet's rank by pts.
        rank = sorted(p.pts for p in kept.packets).index(kept.packets[-1].pts)
        return frames[min(rank, len(frames) - 1)]


def run_with_substream(pipe: MainCamera) -> None:
    """`CameraPipeline.run` for a camera with a `detect_url`."""
    sub = SubstreamDetection(pipe)
    pipe.substream = sub
    if pipe.cam.is_file and sub.cam.is_file:  # two recordings of one scene: one clock
        pipe.source.wall_origin = sub.source.wall_origin = time.time()
    sub.start()
    cam = pipe.cam
    try:
        for conn in pipe.source.connections():
            pipe.stats.connections += 1
            pipe.stats.state = "streaming"
            images = GopImages(conn, pipe.stats, cam.name, cam.clip.keyframe_size)
            session = Session(pipe, conn, images)
            session.detect = SubstreamFeed(session, pipe, sub)
            try:
                session.run()
            except StreamChanged as exc:
                pipe.source.last_error = str(exc)
                log.warning("%s: %s; reconnecting", cam.name, exc)
        pipe.stats.state = pipe.source.state
    finally:
        sub.close()
