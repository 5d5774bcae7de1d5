"""The compressed-domain gate: packet sizes and keyframe flags in, "decode every frame?" out.

Pure: numbers in, decisions out. No PyAV. The pipeline carries the decisions out.

A surveillance scene is static most of the time, and then decoding every frame only to find
nothing is the camera's largest cost. While the gate is *asleep* the pipeline decodes and
analyses keyframes only (a tenth of the work at a 2 s GOP): the background stays current and
anything visible at a keyframe is seen there. Between keyframes the gate watches the sizes of
the compressed P-frames: a static scene's P-frames hold noise and little else, and grow when
something moves. Each P-frame is compared with the median size at the same position in the
GOP over the last GOPs (the first P-frames after a keyframe are larger), the relative excess is
scaled by a robust spread (median absolute deviation) of recent quiet P-frames, and a one-sided
CUSUM over those scores wakes the gate on a sustained rise as well as on one large frame. The
baseline follows bitrate, noise and day/night because it is always made of recent GOPs.

When it wakes the pipeline decodes the buffered packets from a keyframe on (catch-up is faster
than real time), so motion is detected from the frame where it began:
- woken by a P-frame, from this GOP's keyframe;
- woken by the keyframe analysis (something is visible at a keyframe, or the light changed),
  from the keyframe before, since what is seen now may have begun anywhere in the last GOP.
It stays awake while there is motion and `hold` seconds after (the post-roll), and falls asleep
only at a keyframe. Where its assumptions do not hold it decodes everything ("full"):
B-frames (reordered timestamps), a camera that sends only keyframes, a GOP longer than
`MAX_GOP` (the keyframe analysis would come too seldom), keyframes that stop arriving.

The floor: motion that is never visible at a keyframe (it begins and ends within one GOP) and
too small to raise the P-frame sizes above their noise is not seen. `probe` (s) decodes one
whole GOP that often as a spot check; a GOP no longer than `min_event` closes the gap.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

MAX_GOP = 4.0  # s; a longer keyframe interval means full decoding (keyframes come too seldom)
HISTORY_GOPS = 8  # GOPs of P-frame sizes the per-position baseline is the median of
SCALE_SAMPLES = 150  # recent quiet P-frames the spread is estimated from
READY_GOPS = 3  # GOPs of P-frame sizes needed before sizes can wake the gate
MIN_SPREAD = 0.02  # the spread of relative sizes is never taken below 2 %
CUSUM_DRIFT = 1.0  # per-frame allowance (robust sigmas) of the CUSUM
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Wake:
    """The gate woke: decode the buffered packets from the keyframe at `since` on."""

    since: float
    reason: str


class Gate:
    """Feed it every packet (`packet`), the keyframe verdicts while asleep (`keyframe`) and the
    motion verdicts while awake (`motion`); `awake` says whether to decode every frame."""

    def __init__(
        self,
        threshold: float = 6.0,
        probe: float = 0.0,
        hold: float = 5.0,
        max_gop: float = MAX_GOP,
    ) -> None:
        self.threshold = threshold
        self.probe = probe
        self.hold = hold
        self.max_gop = max_gop
        self.awake = True
        self.mode = "warming up"  # why awake, or "asleep"
        self.full: str | None = None  # a reason to decode everything for good (B-frames)
        self.awake_until = -math.inf
        self.last_motion = -math.inf
        self.wakes = 0
        self.last_key: float | None = None
        self.asleep_keys: deque[float] = deque(maxlen=2)  # keyframes analysed while asleep
        self.gops: deque[tuple[float, int]] = deque(maxlen=4)  # (seconds, packets) per GOP
        self.pos = 0  # packets since the last keyframe
        self.sizes: list[deque[int]] = []  # per GOP position (1-based, index pos - 1)
        self.spread: deque[float] = deque(maxlen=SCALE_SAMPLES)  # |relative excess| of P-frames
        self.cusum = 0.0
        self.max_pts: float | None = None
        self.last_probe = -math.inf

    # -- what the pipeline calls ---------------------------------------------------------------
    def packet(self, t: float, size: int, key: bool, pts: float, busy: bool = False) -> Wake | None:
        """Every packet in arrival order, before it is decoded. `busy`: a clip is open.

        Returns a Wake when the gate wakes at this packet; after it, `awake` says whether this
        packet and the following ones are to be decoded.
        """
        if self.max_pts is not None and pts < self.max_pts and self.full is None:
            self.full = "B-frames"
            return self._wake(t, self.last_key if self.last_key is not None else t, "B-frames")
        self.max_pts = pts if self.max_pts is None else max(self.max_pts, pts)
        if key:
            return self._keyframe_packet(t, busy)
        self.pos += 1
        learn = t > self.last_motion + self.hold and not (self.awake and busy)
        z = self._score(size, learn)
        if not self.awake:
            overdue = self.last_key is not None and t - self.last_key > self.max_gop
            if overdue:
                return self._wake(t, self.last_key, "keyframe overdue")
            if z is not None:
                self.cusum = max(0.0, self.cusum + min(z, self.threshold) - CUSUM_DRIFT)
                if z >= self.threshold or self.cusum >= self.threshold:
                    return self._wake(t, self.asleep_keys[-1], f"P-frame size ({z:.1f} sigma)")
        return None

    def keyframe(self, t: float, quiet: bool) -> Wake | None:
        """The verdict on a keyframe analysed while asleep: quiet, or something to look at."""
        if self.awake or quiet:
            return None
        return self._wake(t, self.asleep_keys[0], "keyframe analysis")

    def motion(self, t: float, moving: bool) -> None:
        """A motion verdict on a frame analysed while awake (or caught up)."""
        if moving:
            self.last_motion = max(self.last_motion, t)
            self.awake_until = max(self.awake_until, t + self.hold)

    # -- internals -----------------------------------------------------------------------------
    def _keyframe_packet(self, t: float, busy: bool) -> Wake | None:
        if self.last_key is not None:
            self.gops.append((t - self.last_key, self.pos + 1))
        self.last_key = t
        self.pos = 0
        self.cusum = 0.0
        unsure = self.full or self._structure()
        if self.awake:
            if unsure:
                self.mode = f"full: {unsure}"
            elif not busy and t >= self.awake_until:
                if self.probe and t - self.last_probe >= self.probe:
                    self.last_probe = t
                    self.awake_until = t + 1e-6  # a full GOP as a spot check, then sleep
                    self.mode = "probe"
                    return None
                self.awake = False
                self.mode = "asleep"
                self.asleep_keys.clear()
        elif unsure:
            return self._wake(t, self.asleep_keys[-1], unsure)
        elif self.probe and t - self.last_probe >= self.probe:
            # A spot check: this GOP is decoded in full, from its keyframe (nothing to catch up).
            self.last_probe = t
            self.awake, self.mode = True, "probe"
            self.awake_until = t + 1e-6
            self.asleep_keys.clear()
        if not self.awake:
            self.asleep_keys.append(t)
        return None

    def _structure(self) -> str | None:
        """Why the stream's GOP structure does not suit the gate, if it does not."""
        if not self.gops:
            return "no GOP seen yet"
        if all(n <= 1 for _, n in self.gops):
            return "only keyframes"
        if max(s for s, _ in self.gops) > self.max_gop:
            return f"GOP over {self.max_gop:g} s"
        return None

    def _score(self, size: int, learn: bool) -> float | None:
        """Robust z-score of a P-frame's size against the same GOP position's recent sizes."""
        i = self.pos - 1
        while len(self.sizes) <= i:
            if len(self.sizes) >= 60 * self.max_gop:  # 60 fps at the longest GOP: enough
                return None
            self.sizes.append(deque(maxlen=HISTORY_GOPS))
        hist = self.sizes[i]
        z = None
        if len(hist) >= READY_GOPS and len(self.spread) >= 2 * READY_GOPS:
            base = max(_median(hist), 1.0)
            excess = size / base - 1.0
            # Rate control makes some GOP positions swing more than others: their own spread
            # counts when it is the larger one.
            own = _median([abs(v - base) for v in hist]) / base
            scale = max(MAD_TO_SIGMA * max(_median(self.spread), own), MIN_SPREAD)
            z = excess / scale
            if learn:
                self.spread.append(abs(excess))
        elif learn and hist:
            self.spread.append(abs(size / max(_median(hist), 1.0) - 1.0))
        if learn:
            hist.append(size)
        return z

    def _wake(self, t: float, since: float | None, reason: str) -> Wake | None:
        """Wake up (or stay awake); a Wake only when the gate was asleep."""
        was_asleep = not self.awake
        self.awake = True
        self.mode = reason if self.full is None else f"full: {self.full}"
        self.awake_until = max(self.awake_until, t + self.hold)
        self.cusum = 0.0
        self.asleep_keys.clear()
        if not was_asleep:
            return None
        self.wakes += 1
        return Wake(t if since is None else since, reason)


def _median(values) -> float:
    s = sorted(values)
    n = len(s)
    return float(s[n // 2]) if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
