"""One connection of a camera: packets in, finished clips with keyframes out. The only module
that knows all the capture stages; each of them stays ignorant of the others.

Per packet, in this order:
1. the segmenter sees its time (it may end or split the open clip *before* this packet);
2. the packet goes into the buffer and, if a clip is open, into the clip (or beside it, while
   the clip's end waits for detection to look past it: agent/capture/segmenter.py);
3. the gate sees its size (agent/capture/gate.py): asleep, only keyframes are decoded;
   woken, the buffered packets are decoded again from a keyframe on (catch-up);
4. it is decoded; if an analysis is due, the luma plane goes to the detector, whose verdict
   goes back to the segmenter (it may start a clip, which then takes the buffered packets);
5. frames with motion are offered as keyframe candidates.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from agent import layout
from agent.capture import jpeg
from agent.capture.decoder import Decoded, Decoder
from agent.capture.gate import Gate
from agent.capture.keyframes import Candidate, KeyframePicker, at_edge, quality, sharpness
from agent.capture.motion import MotionDetector, MotionResult
from agent.capture.recorder import ClipWriter, PacketBuffer, WrittenClip, publish
from agent.capture.segmenter import Decision, EndClip, Segmenter, SplitClip, StartClip
from agent.capture.source import Connection, MediaPacket
from agent.config import CameraConfig

log = logging.getLogger(__name__)

CANDIDATE_WINDOW = 1.0  # s; of the frames with motion in each window, one keyframe candidate


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


class Owner(Protocol):
    """What a session needs of the camera it runs for (agent/capture/pipeline.py's
    CameraPipeline; the sub-stream's detection in agent/capture/substream.py)."""

    cam: CameraConfig
    sink: ClipSink | None
    stats: CameraStats
    stop: threading.Event
    on_clip: Callable[[FinishedClip], None] | None


class StreamChanged(Exception):
    """The stream's parameters changed under us; the connection must be opened afresh."""


class _OpenClip:
    def __init__(self, writer: ClipWriter, clip_id: str, event_start: float) -> None:
        self.writer = writer
        self.clip_id = clip_id
        self.event_start = event_start
        self.scores: list[float] = []
        self.held: deque[MediaPacket] = deque()  # past the event's end, until it is settled


@dataclass
class _Mark:
    """Detection state where the gate's sleep began at keyframe `t`: just before a keyframe
    analysed while asleep, or where it fell asleep within that keyframe's GOP. A catch-up
    that decodes from `t` again starts detection over from here."""

    t: float
    detector: MotionDetector | None
    next_analysis: float


class Session:
    """One connection's worth of state: decoder, detector, buffer, segmenter, open clip."""

    def __init__(self, pipe: Owner, conn: Connection) -> None:
        self.pipe = pipe
        self.cam = pipe.cam
        self.conn = conn
        self.decoder = Decoder(conn.stream.codec_context, self.cam.name, pipe.stats)
        self.buffer = PacketBuffer()
        # Motion flickers on small or slow objects: a hole of a few analyses is still one burst.
        self.burst_gap = max(0.6, 2.5 / self.cam.motion.detect_fps)
        self.segmenter = Segmenter(self.cam.clip, self.burst_gap)
        self.picker = KeyframePicker(self.cam.clip.keyframes)
        self.pending: Candidate | None = None  # the best frame of the current candidate window
        self.window_start = 0.0
        self.reformatter = VideoReformatter()
        self.detector: MotionDetector | None = None
        self.clip: _OpenClip | None = None
        self.current: MediaPacket | None = None  # the packet being processed
        self.next_analysis = -1.0
        self.interval = 1.0 / self.cam.motion.detect_fps
        # No skip_loop_filter: it saves a fifth of the decoding, but the undeblocked frames drift
        # within a GOP and snap back at each keyframe, which reads as motion (false clips on the
        # light-switch scenes, events held open long after people left).
        self.gate = self._new_gate()
        self.marks: deque[_Mark] = deque(maxlen=2)
        stats = pipe.stats
        stats.codec = conn.codec
        stats.width, stats.height = conn.size

    def run(self) -> None:
        try:
            for mp in self.conn.packets:
                if mp.discontinuity:
                    log.info("%s: timestamp jump at %.2f s; closing the clip", self.cam.name, mp.t)
                    self._restart()
                self._packet(mp)
        finally:
            # End of stream, stop request or error: what was recorded becomes a clip.
            self._apply(self.segmenter.finish())  # ends any open clip

    def _new_gate(self) -> Gate | None:
        m = self.cam.motion
        self.pipe.stats.gate = m.gate
        if m.gate == "off":
            return None
        # Awake after motion long enough to see a burst become an event; the rest of the
        # post-roll may be slept through: the clip's end waits for it to be settled.
        hold = self.cam.clip.min_event + self.burst_gap
        return Gate(m.gate_threshold, m.gate_probe, hold)

    def _settled(self) -> float | None:
        """How far detection has looked, when short of the packet in hand: while the gate
        sleeps, the last frame analysed (the last keyframe, or where it fell asleep)."""
        if self.gate is None or self.gate.awake or self.detector is None:
            return None
        return self.detector.last_t

    def _busy(self) -> bool:
        """Must the gate stay awake? Not for an open clip: its end waits to be settled."""
        return False

    def _restart(self, *, keep_decoder: bool = False) -> None:
        """Start detection and clips over (a timestamp jump, a new resolution). Through a
        resolution change the decoder carries on, and the new size's GOP stays buffered (a
        clip may start at its keyframe): it has just decoded that keyframe, and starting over
        would lose the rest of the GOP."""
        self._apply(self.segmenter.finish())
        self.segmenter = Segmenter(self.cam.clip, self.burst_gap)
        kept = self.buffer.since_last_keyframe() if keep_decoder else []
        self.buffer.clear()
        for p in kept:
            self.buffer.push(p)
            self.segmenter.packet(p.t, p.key)
        self.picker.clear()
        self.pending = None
        self.gate = self._new_gate()
        self.marks.clear()
        if not keep_decoder:
            self.decoder.reset()

    def _packet(self, mp: MediaPacket) -> None:
        stats = self.pipe.stats
        stats.packets += 1
        stats.bytes += mp.packet.size
        stats.last_packet_wall = time.time()
        self.current = mp
        self._apply(self.segmenter.packet(mp.t, mp.key, self._settled()))
        self.buffer.push(mp)
        if self.clip is not None:
            self.clip.held.append(mp)
            self._flush(self.segmenter.end)
        self._detect_packet(mp, self._busy())
        self.buffer.trim(self.segmenter.horizon(), self.marks[0].t if self.marks else None)

    def _detect_packet(self, mp: MediaPacket, busy: bool) -> None:
        """Steps 3-5 for one packet: gate, decoding, detection. `busy`: a clip is open."""
        stats = self.pipe.stats
        gate = self.gate
        if gate is None:
            self._decode(mp)
            return
        was_awake = gate.awake
        wake = gate.packet(mp.t, mp.packet.size, mp.key, mp.pts * mp.time_base, busy)
        if wake is not None:
            self._catch_up(wake.since, wake.reason)
        elif gate.awake:
            self.marks.clear()
            self._decode(mp)
        elif mp.key:
            self._keyframe(mp)
        else:
            if was_awake:  # fell asleep within this GOP: a catch-up resumes from here
                self._mark(gate.last_key)
            stats.frames_skipped += 1
        if self.gate is not None:
            stats.gate, stats.gate_wakes = self.gate.mode, self.gate.wakes

    def _due(self, t: float) -> bool:
        """Is an analysis due at `t`? (Advances the schedule when it is.)"""
        if t < self.next_analysis:
            return False
        self.next_analysis = max(self.next_analysis + self.interval, t - self.interval)
        return True

    def _decode(self, mp: MediaPacket) -> None:
        """Decode up to `mp` (the packet in hand) and analyse what is due."""
        if self.decoder.follows(mp):
            self._use_frames(self.decoder.decode([mp]))
        else:  # the decoder stopped within this GOP (the gate slept): on from there
            self._use_frames(self.decoder.decode(self.buffer.since_last_keyframe()))

    def _use_frames(self, decoded: Iterable[Decoded]) -> None:
        for p, frame in decoded:
            # Frames analysed already (before a catch-up started over) are not analysed again.
            last = None if self.detector is None else self.detector.last_t
            seen = last is not None and last >= p.t
            if not seen and self._due(p.t):
                self._analyse(frame, p)

    def _mark(self, key: float | None) -> None:
        """Detection state as it is now, for a catch-up from keyframe `key` to start over from."""
        if key is not None:
            self.marks.append(_Mark(key, copy.deepcopy(self.detector), self.next_analysis))

    def _keyframe(self, mp: MediaPacket) -> None:
        """A keyframe while the gate sleeps: analysed always; anything seen wakes the gate."""
        self._mark(mp.t)
        for p, frame in self.decoder.still(mp):
            if p is not mp:
                continue  # a frame held back from before the gate slept: stale
            self._due(mp.t)
            luma, result = self._detect(frame, mp)
            det = self.detector
            assert det is not None
            seen = result.motion or result.global_change or _hint(result, det)
            wake = None if self.gate is None else self.gate.keyframe(mp.t, not seen)
            if wake is not None:
                self._catch_up(wake.since, wake.reason)
                return
            self._use(frame, luma, result, mp)

    def _catch_up(self, since: float, reason: str) -> None:
        """The gate woke: decode (and analyse) the buffered packets from keyframe `since` on,
        carrying on from where the decoder stopped when it can."""
        packets = self.buffer.since(since)
        mark = next((m for m in self.marks if abs(m.t - since) < 1e-9), None)
        self.marks.clear()
        again = not self.decoder.continues(packets)
        if again and mark is not None:  # start detection over from where the sleep began
            self.detector, self.next_analysis = mark.detector, mark.next_analysis
        log.debug(
            "%s: gate woke at %.2f s (%s); decoding %d packets from %.2f s%s",
            self.cam.name,
            self.current.t if self.current else since,
            reason,
            len(packets),
            since,
            " again" if again else "",
        )
        self._use_frames(self.decoder.decode(packets))

    def _analyse(self, frame: av.VideoFrame, mp: MediaPacket) -> None:
        luma, result = self._detect(frame, mp)
        self._use(frame, luma, result, mp)

    def _detect(self, frame: av.VideoFrame, mp: MediaPacket) -> tuple[np.ndarray, MotionResult]:
        t = mp.t
        luma = luma_plane(frame)
        if self.detector is None or self.detector.size != (frame.width, frame.height):
            if self.detector is not None:
                log.info(
                    "%s: resolution changed to %dx%d", self.cam.name, frame.width, frame.height
                )
                self._restart(keep_decoder=True)
            self.detector = MotionDetector(
                self.cam.motion, frame.width, frame.height, self.cam.mask
            )
            self.pipe.stats.width, self.pipe.stats.height = frame.width, frame.height
        return luma, self.detector.analyse(luma, t)

    def _use(
        self, frame: av.VideoFrame, luma: np.ndarray, result: MotionResult, mp: MediaPacket
    ) -> None:
        """A verdict goes to the segmenter and the gate; a frame with motion may be a keyframe."""
        t = mp.t
        self.pipe.stats.frames_analysed += 1
        if result.motion:
            self.pipe.stats.last_motion_wall = mp.wall
        if self.gate is not None:
            hint = self.detector is not None and _hint(result, self.detector)
            self.gate.motion(t, result.motion, hint)
        self._apply(self.segmenter.motion(t, result.motion))
        if self.clip is not None:
            self.clip.scores.append(result.score)
        if result.motion and not result.global_change:
            self._offer_keyframe(frame, luma, result)

    def _offer_keyframe(self, frame: av.VideoFrame, luma: np.ndarray, r: MotionResult) -> None:
        """Keep the best frame of each CANDIDATE_WINDOW; only that one is resized for the pool,
        not every analysed frame of a long event (the decoder keeps the held frame's buffer)."""
        detector = self.detector
        assert detector is not None and detector.last_frame is not None
        good = r.steady and not at_edge(r.box)  # else a fallback: cut off, or the light changing
        score = quality(r.score, sharpness(luma, r.box), good)
        self._offer(r.t, score, detector.last_frame.copy, frame, good, r.steady)

    def _offer(
        self,
        t: float,
        score: float,
        thumb: Callable[[], np.ndarray],
        image,
        good: bool = True,
        steady: bool = True,
    ) -> None:
        if self.pending is not None and t - self.window_start >= CANDIDATE_WINDOW:
            self._flush_candidate()
        if self.pending is None:
            self.window_start = t
        if self.pending is None or score > self.pending.score:
            self.pending = Candidate(t, score, thumb(), image, good, steady)

    def _flush_candidate(self) -> None:
        cand, self.pending = self.pending, None
        if cand is None or not self.picker.would_keep(cand.t, cand.score):
            return
        cand.image = self._prepare(cand.image)
        self.picker.add(cand)

    def _prepare(self, image: av.VideoFrame) -> bytes:
        """A candidate's image as the pool keeps it: a JPEG (~0.1 MB; the picture itself at
        1280x720 is 1.4 MB, times the pool's 8). The substream session keeps packets."""
        size = self.cam.clip.keyframe_size
        return jpeg.encode_jpeg(jpeg.prepare(image, size, self.reformatter), size)

    def _image(self, cand: Candidate) -> av.VideoFrame | bytes | None:
        """A chosen candidate's image (a JPEG, or a frame to encode), decoded if need be (None:
        it cannot be)."""
        return cand.image

    def _flush(self, until: float) -> None:
        """Write the open clip's held packets, in order, up to the first at or after `until`."""
        clip = self.clip
        if clip is None:
            return
        try:
            while clip.held and clip.held[0].t < until:
                clip.writer.write(clip.held.popleft())
        except OSError as exc:  # a full disk: this clip is lost, never the camera
            self._discard(clip, exc)

    def _apply(self, decisions: list[Decision]) -> None:
        for d in decisions:
            if isinstance(d, StartClip):
                self._open(d.at, d.event_start)
            elif isinstance(d, SplitClip):
                event_end = self.segmenter.last_motion if self.segmenter.last_motion else d.at
                self._flush(d.at)
                self._close(min(event_end, d.at))
                self._open(d.at, d.at, from_buffer=False)  # the split keyframe is this packet
            elif isinstance(d, EndClip):
                self._flush(d.at)
                self._close(d.event_end)

    def _open(self, at: float, event_start: float, *, from_buffer: bool = True) -> None:
        """Open a clip at keyframe `at`: from the buffer (pre-roll), or from the next packet."""
        refusal = self.pipe.sink.refusal()
        if refusal:
            self.pipe.stats.clips_refused += 1
            log.error("%s: motion at %.1f s not recorded: %s", self.cam.name, event_start, refusal)
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
        clip_id, path = self.pipe.sink.name_clip(self.cam.name, first.t, first.wall)
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

    def _discard(self, clip: _OpenClip | None, exc: OSError, clip_id: str = "") -> None:
        """A clip that cannot be written or catalogued (the disk is full): its partial files
        go, the error is logged and shown in status, and the camera carries on."""
        self.clip = None
        if clip is not None:
            clip_id = clip.clip_id
            clip.writer.abort()
            path = clip.writer.path
            for tmp in path.parent.glob(layout.keyframe_tmp_glob(path)):
                tmp.unlink(missing_ok=True)
        self.pipe.stats.clips_refused += 1
        self.pipe.stats.last_error = f"clip {clip_id} not recorded: {exc}"
        log.error("%s: clip %s not recorded: %s", self.cam.name, clip_id, exc)

    def _close(self, event_end: float) -> None:
        clip = self.clip
        try:
            self._finish(event_end)
        except OSError as exc:
            self._discard(clip, exc)

    def _finish(self, event_end: float) -> None:
        clip, self.clip = self.clip, None
        if clip is None:
            return
        written = clip.writer.close()
        if written is None:
            return
        event_start = min(max(clip.event_start, written.start), written.end)
        event_end = min(max(event_end, event_start), written.end)
        self._flush_candidate()
        chosen = self.picker.pick(written.start, written.end)
        keyframes = []
        for cand in chosen:
            image = self._image(cand)
            if image is None:
                continue
            final = layout.keyframe_path(written.path, len(keyframes))
            tmp = layout.tmp_path(final)
            if isinstance(image, bytes):
                jpeg.write_file(image, tmp)
            else:
                jpeg.write_jpeg(image, tmp, self.cam.clip.keyframe_size)
            keyframes.append(Keyframe(final, tmp, cand.t))
        self.picker.drop_before(written.end)
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
            width=self.pipe.stats.width,
            height=self.pipe.stats.height,
            keyframes=tuple(keyframes),
        )
        self.pipe.sink.deliver(finished)
        self.pipe.stats.clips += 1
        log.info(
            "%s: clip %s %.1f-%.1f s (%d frames, %d keyframes)",
            self.cam.name,
            clip.clip_id,
            written.start,
            written.end,
            written.frames,
            len(keyframes),
        )
        if self.pipe.on_clip:
            self.pipe.on_clip(finished)


def _hint(result: MotionResult, det: MotionDetector) -> bool:
    """A change under the motion threshold but worth a closer look (half the least area)."""
    return result.score * det.valid_count >= 0.5 * det.min_pixels


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
