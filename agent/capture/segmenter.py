"""The event state machine: motion verdicts and keyframe times in, clip boundaries out.

Pure: numbers in, decisions out. The recorder carries them out on packets.

Rules (all times are media seconds on the camera's timeline):
- A *burst* is a run of motion verdicts with no hole longer than `burst_gap`. A burst lasting at
  least `min_event` opens an *event* that starts when the burst started; shorter ones are noise.
- An open event is extended by any later motion and ends `post_roll` after the last motion, so
  two bursts closer than `post_roll` are one event.
- A clip starts at the last keyframe at or before `event start - pre_roll`, so it plays from its
  first frame; it never starts before the end of the previous clip if a keyframe allows that.
- While the compressed-domain gate sleeps in the post-roll, detection has looked only as far as
  the last frame it analysed (`settled`): the event's end then waits until detection has looked
  past it (the next keyframe analysed; motion found on the way extends the event instead), so
  sleeping there never splits an event the gate-off pipeline would have kept whole. The
  packets after the end wait too (`end` says where it is), and go into the clip only if the
  event goes on.
- A clip reaching `max_clip` is split at a keyframe: the next clip starts exactly where the last
  one ended, so a long event becomes back-to-back clips with no gap. The split happens at the
  last keyframe that keeps the clip within `max_clip` (judged by the GOP length seen so far).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from agent.config import ClipSettings


@dataclass(frozen=True)
class StartClip:
    at: float  # keyframe time the clip starts at
    event_start: float


@dataclass(frozen=True)
class SplitClip:
    at: float  # keyframe time: the current clip ends here, the next starts here


@dataclass(frozen=True)
class EndClip:
    at: float  # the clip holds packets before this time
    event_end: float  # last motion seen


Decision = StartClip | SplitClip | EndClip


def horizon(settings: ClipSettings, burst_gap: float, gop: float) -> float:
    """How far back (s) packets must be kept to honour pre-roll and min_event, with GOPs of
    `gop` s (a catch-up decodes from at most two keyframes back)."""
    return settings.pre_roll + settings.min_event + burst_gap + 2 * gop + 1.0


class Segmenter:
    def __init__(self, settings: ClipSettings, burst_gap: float = 0.6) -> None:
        self.s = settings
        self.burst_gap = burst_gap
        self.keyframes: deque[float] = deque()
        self.gop = 0.0  # last keyframe interval seen
        self.burst_start: float | None = None
        self.last_motion: float | None = None
        self.event_start: float | None = None
        self.clip_start: float | None = None
        self.prev_clip_end = -float("inf")
        self.last_t: float | None = None

    @property
    def recording(self) -> bool:
        return self.clip_start is not None

    def horizon(self) -> float:
        """How far back (s) packets must be kept to honour pre-roll and min_event."""
        return horizon(self.s, self.burst_gap, self.gop)

    @property
    def end(self) -> float:
        """Where the open clip ends unless motion comes first (infinity with none open)."""
        if self.clip_start is None or self.last_motion is None:
            return math.inf
        return self.last_motion + self.s.post_roll

    def packet(self, t: float, keyframe: bool, settled: float | None = None) -> list[Decision]:
        """Called for every packet, before the recorder stores it. `settled`: how far
        detection has looked, when short of `t` (the gate sleeps); None: up to `t`."""
        self.last_t = t
        out: list[Decision] = []
        if self.clip_start is not None:
            end = self.end
            if t >= end:
                if settled is None or settled >= end:
                    out.append(self._end(end))
            elif keyframe and t > self.clip_start:
                gop = self.gop or 0.0
                if t + gop > self.clip_start + self.s.max_clip + 1e-6:
                    out.append(SplitClip(t))
                    self.clip_start = t
        if keyframe:
            if self.keyframes:
                self.gop = t - self.keyframes[-1]
            self.keyframes.append(t)
            while len(self.keyframes) > 2 and self.keyframes[1] < t - self.horizon():
                self.keyframes.popleft()
        return out

    def motion(self, t: float, moving: bool) -> list[Decision]:
        """Called for every analysed frame, after its packet went through `packet`."""
        out: list[Decision] = []
        if self.clip_start is not None and t >= self.end:
            # A frame past the held end (a wake's catch-up): the end is settled, before this.
            out.append(self._end(self.end))
        if not moving:
            short = self.event_start is None and self.last_motion is not None
            if short and t - self.last_motion > self.burst_gap:
                self.burst_start = None  # the burst ended short of min_event: noise
            return out
        if (
            self.burst_start is None
            or (self.last_motion is not None and t - self.last_motion > self.burst_gap)
        ) and self.event_start is None:
            self.burst_start = t
        self.last_motion = t
        if self.event_start is None and t - self.burst_start >= self.s.min_event:
            self.event_start = self.burst_start
            at = self._clip_start(self.event_start)
            self.clip_start = at
            out.append(StartClip(at, self.event_start))
        return out

    def finish(self) -> list[Decision]:
        """End of stream or shutdown: close an open clip after the last packet seen."""
        if self.clip_start is None or self.last_t is None:
            self._reset_event()
            return []
        return [self._end(self.last_t, inclusive=True)]

    def _end(self, at: float, inclusive: bool = False) -> EndClip:
        assert self.last_motion is not None
        decision = EndClip(at + (1e-6 if inclusive else 0.0), min(self.last_motion, at))
        self.prev_clip_end = at
        self._reset_event()
        return decision

    def _reset_event(self) -> None:
        self.clip_start = None
        self.event_start = None
        self.burst_start = None
        self.last_motion = None

    def _clip_start(self, event_start: float) -> float:
        want = event_start - self.s.pre_roll
        before = [k for k in self.keyframes if k <= want]
        if before and before[-1] >= self.prev_clip_end:
            return before[-1]
        # Pre-roll would overlap the previous clip: start at the first keyframe after it instead.
        after_prev = [k for k in self.keyframes if self.prev_clip_end <= k <= event_start]
        if after_prev:
            return after_prev[0]
        if before:
            return before[-1]
        # The buffer does not reach back that far (GOP longer than the buffer): oldest we have.
        candidates = [k for k in self.keyframes if k <= event_start]
        return candidates[-1] if candidates else self.keyframes[0] if self.keyframes else want
