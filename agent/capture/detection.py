"""Detection on one stream: which packets to decode, which frames to analyse, and the verdicts.

Per packet (after the session buffered it): the gate sees its size (agent/capture/gate.py);
asleep, only keyframes are decoded and analysed, and anything seen on one wakes the gate;
awake, every packet is decoded and an analysis runs every 1/detect_fps s; a wake decodes the
buffered packets again from a keyframe on (a catch-up), carrying on from where the decoder
stopped when it can, so no frame is decoded twice. Frames analysed already are not analysed
again; when the decoder must start over, so does detection, from the state saved where the
sleep began (`_Mark`).

Pure scheduling: decoding is handed in (`Frames`, agent/capture/decoder.py in the agent, a
fake in the tests), as is the luma plane of a decoded frame; the verdicts go out through a
callback as `Analysis`.
"""

from __future__ import annotations

import copy
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from agent.capture.gate import Gate
from agent.capture.motion import MotionDetector, MotionResult
from agent.capture.source import MediaPacket
from agent.config import CameraConfig

log = logging.getLogger(__name__)


class Frames(Protocol):
    """Decoding, as detection drives it (agent/capture/decoder.py's Decoder)."""

    def follows(self, mp: MediaPacket) -> bool: ...
    def continues(self, packets: Sequence[MediaPacket]) -> bool: ...
    def seen(self, mp: MediaPacket) -> bool: ...
    def decode(self, packets: Sequence[MediaPacket]) -> Iterable[tuple[MediaPacket, Any]]: ...
    def still(self, mp: MediaPacket) -> list[tuple[MediaPacket, Any]]: ...
    def reset(self) -> None: ...


class Buffered(Protocol):
    """The stream's recent packets (agent/capture/recorder.py's PacketBuffer)."""

    def since(self, t: float) -> list[MediaPacket]: ...
    def since_last_keyframe(self) -> list[MediaPacket]: ...


class Counters(Protocol):
    """Where detection counts its work (the camera's stats)."""

    width: int
    height: int
    frames_analysed: int
    frames_skipped: int
    gate: str
    gate_wakes: int


@dataclass(frozen=True)
class Analysis:
    """One analysed frame."""

    packet: MediaPacket
    frame: Any  # the decoded picture (for keyframe images)
    luma: np.ndarray
    result: MotionResult
    detector: MotionDetector  # after this frame (its background thumbnail, for likeness)


def burst_gap(cam: CameraConfig) -> float:
    """Motion flickers on small or slow objects: a hole of a few analyses is still one burst."""
    return max(0.6, 2.5 / cam.motion.detect_fps)


def hint(result: MotionResult, det: MotionDetector) -> bool:
    """A change under the motion threshold but worth a closer look (half the least area)."""
    return result.score * det.valid_count >= 0.5 * det.min_pixels


@dataclass
class _Mark:
    """Detection state where the gate's sleep began at keyframe `t`: just before a keyframe
    analysed while asleep, or where it fell asleep within that keyframe's GOP. A catch-up
    that decodes from `t` again starts detection over from here."""

    t: float
    detector: MotionDetector | None
    next_analysis: float


class Detection:
    """Gate, decoding and detector of one stream connection."""

    def __init__(
        self,
        cam: CameraConfig,
        frames: Frames,
        buffer: Buffered,
        stats: Counters,
        on_analysis: Callable[[Analysis], None],
        luma: Callable[[Any], np.ndarray],
        on_resize: Callable[[], None] = lambda: None,
    ) -> None:
        self.cam = cam
        self.frames = frames
        self.buffer = buffer
        self.stats = stats
        self.on_analysis = on_analysis
        self.luma = luma
        self.on_resize = on_resize  # the picture's size changed: detection starts over
        self.interval = 1.0 / cam.motion.detect_fps
        self.detector: MotionDetector | None = None
        self.next_analysis = -1.0
        # No skip_loop_filter: it saves a fifth of the decoding, but the undeblocked frames drift
        # within a GOP and snap back at each keyframe, which reads as motion (false clips on the
        # light-switch scenes, events held open long after people left).
        self.gate = self._new_gate()
        self.marks: deque[_Mark] = deque(maxlen=2)
        self.now = 0.0  # the time of the packet in hand

    def packet(self, mp: MediaPacket, busy: bool = False, event: bool = False) -> None:
        """Gate, decoding and analysis for the packet in hand (already buffered). `busy`: keep
        the gate awake (another stream's clip waits on these verdicts); `event`: a clip is
        open (no keyframe is skipped while it is: its end is settled at the next one)."""
        self.now = mp.t
        gate = self.gate
        if gate is None:
            self._decode(mp)
            return
        was_awake = gate.awake
        wake = gate.packet(mp.t, mp.packet.size, mp.key, mp.pts * mp.time_base, busy, event)
        if wake is not None:
            self.catch_up(wake.since, wake.reason)
        elif gate.awake:
            self.marks.clear()
            self._decode(mp)
        elif mp.key and gate.looking:
            self._keyframe(mp)
        else:
            if was_awake:  # fell asleep within this GOP: a catch-up resumes from here
                self._mark(gate.last_key)
            self.stats.frames_skipped += 1
        if self.gate is not None:
            self.stats.gate, self.stats.gate_wakes = self.gate.mode, self.gate.wakes

    def settled(self) -> float | None:
        """How far detection has looked, when short of the packet in hand: while the gate
        sleeps, the last frame analysed (the last keyframe, or where it fell asleep)."""
        if self.gate is None or self.gate.awake or self.detector is None:
            return None
        return self.detector.last_t

    def keep_from(self) -> float | None:
        """The oldest keyframe a catch-up may still decode from (the buffer keeps it)."""
        return self.marks[0].t if self.marks else None

    def restart(self, *, keep_decoder: bool = False) -> None:
        """A timestamp jump or a new resolution: a fresh gate; the decoder carries on through a
        resolution change only (it has just decoded the new size's keyframe)."""
        self.gate = self._new_gate()
        self.marks.clear()
        if not keep_decoder:
            self.frames.reset()

    def start_over(self) -> None:
        """Detection from scratch on this stream (a fresh background, a fresh gate)."""
        self.detector = None
        self.gate = self._new_gate()
        self.marks.clear()
        self.next_analysis = -1.0

    def catch_up(self, since: float, reason: str) -> None:
        """The gate woke: decode (and analyse) the buffered packets from keyframe `since` on,
        carrying on from where the decoder stopped when it can."""
        packets = self.buffer.since(since)
        mark = next((m for m in self.marks if abs(m.t - since) < 1e-9), None)
        self.marks.clear()
        again = not self.frames.continues(packets) and any(map(self.frames.seen, packets))
        if again and mark is not None:  # start detection over from where the sleep began
            self.detector, self.next_analysis = mark.detector, mark.next_analysis
        log.debug(
            "%s: gate woke at %.2f s (%s); decoding %d packets from %.2f s%s",
            self.cam.name,
            self.now,
            reason,
            len(packets),
            since,
            " again" if again else "",
        )
        self._use_frames(self.frames.decode(packets))

    # -- internals -----------------------------------------------------------------------------
    def _new_gate(self) -> Gate | None:
        m = self.cam.motion
        self.stats.gate = m.gate
        if m.gate == "off":
            return None
        # Awake after motion long enough to see a burst become an event; the rest of the
        # post-roll may be slept through: the clip's end waits for it to be settled.
        hold = self.cam.clip.min_event + burst_gap(self.cam)
        return Gate(m.gate_threshold, m.gate_probe, hold)

    def _due(self, t: float) -> bool:
        """Is an analysis due at `t`? (Advances the schedule when it is.)"""
        if t < self.next_analysis:
            return False
        self.next_analysis = max(self.next_analysis + self.interval, t - self.interval)
        return True

    def _decode(self, mp: MediaPacket) -> None:
        """Decode up to `mp` (the packet in hand) and analyse what is due."""
        if self.frames.follows(mp):
            self._use_frames(self.frames.decode([mp]))
        else:  # the decoder stopped within this GOP (the gate slept): on from there
            self._use_frames(self.frames.decode(self.buffer.since_last_keyframe()))

    def _use_frames(self, decoded: Iterable[tuple[MediaPacket, Any]]) -> None:
        for p, frame in decoded:
            # Frames analysed already (before a catch-up started over) are not analysed again.
            last = None if self.detector is None else self.detector.last_t
            seen = last is not None and last >= p.t
            if not seen and self._due(p.t):
                self._use(frame, p, self._detect(frame, p))

    def _mark(self, key: float | None) -> None:
        """Detection state as it is now, for a catch-up from keyframe `key` to start over from."""
        if key is not None:
            self.marks.append(_Mark(key, copy.deepcopy(self.detector), self.next_analysis))

    def _keyframe(self, mp: MediaPacket) -> None:
        """A keyframe while the gate sleeps: analysed always; anything seen wakes the gate."""
        self._mark(mp.t)
        for p, frame in self.frames.still(mp):
            if p is not mp:
                continue  # a frame held back from before the gate slept: stale
            self._due(mp.t)
            luma, result = self._detect(frame, mp)
            det = self.detector
            assert det is not None
            seen = result.motion or result.global_change or hint(result, det)
            steady = result.steady and det.fit.tone == (1.0, 0.0)  # the light as learnt
            wake = None if self.gate is None else self.gate.keyframe(mp.t, not seen, steady)
            if wake is not None:
                self.catch_up(wake.since, wake.reason)
                return
            self._use(frame, mp, (luma, result))

    def _detect(self, frame: Any, mp: MediaPacket) -> tuple[np.ndarray, MotionResult]:
        luma = self.luma(frame)
        height, width = luma.shape
        if self.detector is None or self.detector.size != (width, height):
            if self.detector is not None:
                log.info("%s: resolution changed to %dx%d", self.cam.name, width, height)
                self.on_resize()
            self.detector = MotionDetector(self.cam.motion, width, height, self.cam.mask)
            self.stats.width, self.stats.height = width, height
        return luma, self.detector.analyse(luma, mp.t)

    def _use(self, frame: Any, mp: MediaPacket, verdict: tuple[np.ndarray, MotionResult]) -> None:
        """A verdict goes to the gate, then out."""
        luma, result = verdict
        det = self.detector
        assert det is not None
        self.stats.frames_analysed += 1
        if self.gate is not None:
            self.gate.motion(mp.t, result.motion, hint(result, det))
        self.on_analysis(Analysis(mp, frame, luma, result, det))
