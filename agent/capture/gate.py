"""The compressed-domain gate: packet sizes and keyframe flags in, "decode every frame?" out.

Pure: numbers in, decisions out. No PyAV. The pipeline carries the decisions out.

A surveillance scene is static most of the time, and then decoding every frame only to find
nothing is the camera's largest cost. While the gate is *asleep* the pipeline decodes and
analyses keyframes only: the background stays current and anything visible at a keyframe is
seen there. Between keyframes the gate watches the sizes of the compressed frames, which grow
when something moves. While no clip is open and the light is steady, keyframes are analysed
`LOOK_EVERY` s apart at most (every other one at a 1 s GOP): at camera bitrates keyframes
carry most of the bits, so decoding each of them is most of a static scene's cost. Not
further apart: motion visible at a keyframe but too small for the frame sizes is seen if it
lasts 2 s (or a GOP, if longer); at 4 s a 2.5 s event of a small object went unseen.

The statistic has to survive what real encoders do to a static scene: variable bitrate (a
static scene's P-frames are a few hundred bytes, and rate control makes single frames jump
2-3x), the first frames after a keyframe being several times larger than the rest, a
keyframe interval that changes ("smart codecs" stretch it to 10 s while nothing moves) and
B-frames (small frames between larger ones). So:
- sizes are compared in log space (ratios: the same at 300 B and at 30 kB a frame);
- each frame is compared with the recent quiet frames of its own kind (a forward-predicted
  frame, or a B-frame: its timestamp is below one already seen) at about the same distance
  from the keyframe (bins that widen with the distance, so a GOP of any length, changing or
  not, fills them);
- the excess is scaled by a robust spread (median absolute deviation) of recent quiet frames,
  never below MIN_SCALE;
- a one-sided CUSUM with each frame's contribution capped at Z_CAP wakes the gate at
  `threshold`: only a *sustained* rise does (seven frames far above their baseline, about half
  a second; more frames a little above it). Single large frames, whatever their size, never
  do: rate control makes those. Waking half a second late costs nothing, because the
  pipeline then decodes from the GOP's keyframe on.

A wake is cheap by design: the decoder carries on from where it stopped (agent/capture/
decoder.py), so the frames between the keyframe and the wake are decoded once, and a wake
that finds nothing goes back to sleep after `verify` seconds, anywhere in a GOP, instead of
staying up for the post-roll.

When it wakes the pipeline decodes the buffered packets from a keyframe on, so motion is
detected from the frame where it began:
- woken by frame sizes, from this GOP's keyframe, or the one before it when the sizes rose
  within `EARLY` s of a keyframe that was not analysed;
- woken by the keyframe analysis (something is visible at a keyframe, or the light changed),
  from the keyframe analysed before, since what is seen now may have begun anywhere since.
It stays awake while there is motion and `hold` seconds after (long enough to see a burst
become an event), and sleeps through the rest of a clip's post-roll: the segmenter holds the
clip's end until detection has looked past it (the next keyframe analysed, or a wake's
catch-up), so an event goes on exactly as with every frame decoded. A `busy` caller (the
sub-stream, whose main stream's clip cannot wait for it) keeps it awake while a clip is open.
It decodes everything ("full") only where there is nothing to gain: a camera
that sends only keyframes, or a GOP longer than `max_gop` (keyframes too seldom to watch the
scene by); keyframes that stop coming wake it.

The floor: motion that is never visible at a keyframe (it begins and ends within one GOP) and
too small to raise the frame sizes above their noise is not seen. `probe` (s) decodes one
whole GOP that often as a spot check.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

MAX_GOP = 12.0  # s; a longer keyframe interval means full decoding (keyframes come too seldom)
HISTORY = 24  # recent quiet sizes per bin the baseline is the median of
SCALE_SAMPLES = 200  # recent quiet residuals the spread is estimated from
MIN_SAMPLES = 3  # sizes a bin needs before it can score a frame
MIN_SCALE = 0.15  # the spread of log sizes is never taken below this (~15 %)
DEFAULT_SCALE = 0.4  # ... nor below this until SCALE_SAMPLES // 10 residuals are known
Z_CAP = 2.5  # one frame adds at most this much to the CUSUM
CUSUM_DRIFT = 1.0  # per-frame allowance (robust sigmas) of the CUSUM
MAD_TO_SIGMA = 1.4826
VERIFY = 1.0  # s a wake stays up when the frames it decoded show nothing
WARM_UP = 2.0  # s decoded in full at least, after the first keyframe (the detector learns)
LOOK_EVERY = 2.0  # s: asleep with no clip open, a keyframe is analysed this often at most
EARLY = 1.0  # s: a wake by frame sizes this soon after a skipped keyframe decodes the GOP before
BIN_EDGES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192)


@dataclass(frozen=True)
class Wake:
    """The gate woke: decode the buffered packets from the keyframe at `since` on."""

    since: float
    reason: str


def size_bin(pos: int) -> int:
    """Bin of a frame `pos` frames of its kind after the keyframe: exact near it, wider away."""
    return bisect.bisect_right(BIN_EDGES, pos)


class Gate:
    """Feed it every packet (`packet`), the keyframe verdicts while asleep (`keyframe`) and the
    motion verdicts while awake (`motion`); `awake` says whether to decode every frame."""

    def __init__(
        self,
        threshold: float = 10.0,
        probe: float = 0.0,
        hold: float = 5.0,
        max_gop: float = MAX_GOP,
        verify: float = VERIFY,
    ) -> None:
        self.threshold = threshold
        self.probe = probe
        self.hold = hold
        self.max_gop = max_gop
        self.verify = verify
        self.awake = True
        self.mode = "warming up"  # why awake, or "asleep"
        self.awake_until = -math.inf
        self.last_motion = -math.inf
        self.wakes = 0
        self.last_key: float | None = None
        self.prev_key: float | None = None  # the keyframe before it
        # Asleep: the keyframes analysed (the last one, or where it fell asleep, last), from
        # which a keyframe wake catches up.
        self.asleep_keys: deque[float] = deque(maxlen=2)
        self.looking = True  # decode and analyse the keyframe in hand
        self.look_next = False  # the light was changing at the last one: analyse the next
        self.gops: deque[tuple[float, int]] = deque(maxlen=4)  # (seconds, packets) per GOP
        self.pos = [0, 0]  # frames of each kind (forward, B) since the last keyframe
        self.sizes: dict[tuple[int, int], deque[float]] = {}  # (kind, bin) -> log sizes
        self.spread: deque[float] = deque(maxlen=SCALE_SAMPLES)  # |residual| of quiet frames
        self.cusum = 0.0
        self.max_pts: float | None = None
        self.last_probe = -math.inf

    # -- what the pipeline calls ---------------------------------------------------------------
    def packet(
        self, t: float, size: int, key: bool, pts: float, busy: bool = False, event: bool = False
    ) -> Wake | None:
        """Every packet in arrival order, before it is decoded. `busy`: stay awake (a clip is
        open whose end cannot wait for a keyframe); `event`: a clip is open (its end is settled
        at the next keyframe analysed, so none is skipped).

        Returns a Wake when the gate wakes at this packet; after it, `awake` says whether this
        packet and the following ones are to be decoded.
        """
        backward = self.max_pts is not None and pts < self.max_pts
        self.max_pts = pts if self.max_pts is None else max(self.max_pts, pts)
        if key:
            return self._keyframe_packet(t, busy, event)
        kind = 1 if backward else 0
        self.pos[kind] += 1
        learn = t > self.last_motion + self.hold and not (self.awake and busy)
        z = self._score(kind, size, learn)
        if self.awake:
            self._maybe_sleep(t, busy)
            return None
        if self.last_key is not None and t - self.last_key > self.max_gop:
            self.gops.append((t - self.last_key, sum(self.pos) + 1))  # a GOP too long, so far
            return self._wake(t, self.last_key, "keyframe overdue")
        if z is not None:
            self.cusum = max(0.0, self.cusum + min(z, Z_CAP) - CUSUM_DRIFT)
            if self.cusum >= self.threshold:
                # From this GOP's keyframe: the sizes rose within it. If they rose so soon
                # after it that the motion may have begun before it, and it was not analysed
                # (which would have seen that), from the one before.
                since = self.last_key
                skipped = self.asleep_keys[-1] != self.last_key
                if skipped and self.prev_key is not None and t - self.last_key < EARLY:
                    since = self.prev_key
                return self._wake(t, since, f"frame sizes ({self.cusum:.0f} sigma)")
        return None

    def keyframe(self, t: float, quiet: bool, steady: bool = True) -> Wake | None:
        """The verdict on a keyframe analysed while asleep: quiet, or something to look at;
        `steady`: the light is as the background has it (else the next keyframe is analysed
        too: a detector that follows changing light needs its frames)."""
        self.look_next = not steady
        if self.awake or quiet:
            return None
        return self._wake(t, self.asleep_keys[0], "keyframe analysis")

    def motion(self, t: float, moving: bool, hint: bool = False) -> None:
        """A verdict on a frame analysed while awake (or caught up): motion holds the gate up
        for `hold` s; a `hint` (a change too small to be motion yet) for `verify` s."""
        if moving:
            self.last_motion = max(self.last_motion, t)
            self.awake_until = max(self.awake_until, t + self.hold)
        elif hint:
            self.awake_until = max(self.awake_until, t + self.verify)

    @property
    def unsuitable(self) -> str | None:
        """Why the stream's GOP structure does not suit the gate, if it does not. The first
        GOP is decoded in full: the frame sizes at each distance from the keyframe are learnt
        from it (a gate asleep before then would learn a person walking in as the baseline)."""
        if not self.gops:
            return "no GOP seen yet"
        if all(n <= 1 for _, n in self.gops):
            return "only keyframes"
        if max(s for s, _ in self.gops) > self.max_gop:
            return f"GOP over {self.max_gop:g} s"
        return None

    # -- internals -----------------------------------------------------------------------------
    def _keyframe_packet(self, t: float, busy: bool, event: bool) -> Wake | None:
        if self.last_key is not None:
            self.gops.append((t - self.last_key, sum(self.pos) + 1))
        else:
            self.awake_until = max(self.awake_until, t + WARM_UP)
        self.prev_key, self.last_key = self.last_key, t
        self.pos = [0, 0]
        self.cusum = 0.0
        unsure = self.unsuitable
        self.looking = True
        if self.awake:
            if unsure:
                self.mode = f"full: {unsure}"
                return None
            if self.probe and t - self.last_probe >= self.probe and t >= self.awake_until:
                self.last_probe = t
                self.awake_until = t + 1e-6  # a full GOP as a spot check, then sleep
                self.mode = "probe"
                return None
            self._maybe_sleep(t, busy)  # asleep at this keyframe: it is analysed
            return None
        elif unsure:
            return self._wake(t, self.asleep_keys[-1], unsure)
        elif self.probe and t - self.last_probe >= self.probe:
            # A spot check: this GOP is decoded in full, from its keyframe (nothing to catch up).
            self.last_probe = t
            self.awake, self.mode = True, "probe"
            self.awake_until = t + 1e-6
            self.asleep_keys.clear()
            return None
        # Asleep with no clip open, keyframes are analysed LOOK_EVERY s apart: the frame sizes
        # watch the GOPs between, and a wake decodes from this GOP's keyframe all the same.
        if event or self.look_next or t - self.asleep_keys[-1] >= LOOK_EVERY - 1e-6:
            self.asleep_keys.append(t)
        else:
            self.looking = False
        return None

    def _maybe_sleep(self, t: float, busy: bool) -> None:
        if busy or t < self.awake_until or self.unsuitable or self.last_key is None:
            return
        if self.mode == "probe" and t > self.last_key:
            return  # a probe decodes its whole GOP
        self.awake = False
        self.mode = "asleep"
        self.asleep_keys.clear()
        self.asleep_keys.append(self.last_key)  # a keyframe wake catches up from here on

    def _score(self, kind: int, size: int, learn: bool) -> float | None:
        """Robust z-score of a frame's log size against its kind's and bin's recent sizes."""
        key = (kind, size_bin(self.pos[kind]))
        hist = self.sizes.get(key)
        if hist is None:
            hist = self.sizes[key] = deque(maxlen=HISTORY)
        x = math.log(max(size, 1))
        z = None
        if len(hist) >= MIN_SAMPLES:
            residual = x - _median(hist)
            if len(self.spread) >= SCALE_SAMPLES // 10:
                scale = max(MAD_TO_SIGMA * _median(self.spread), MIN_SCALE)
            else:
                scale = DEFAULT_SCALE
            z = residual / scale
            if learn:
                self.spread.append(abs(residual))
        if learn:
            hist.append(x)
        return z

    def _wake(self, t: float, since: float | None, reason: str) -> Wake | None:
        """Wake up (or stay awake); a Wake only when the gate was asleep."""
        was_asleep = not self.awake
        self.awake = True
        unsure = self.unsuitable
        self.mode = f"full: {unsure}" if unsure and unsure != "no GOP seen yet" else reason
        self.awake_until = max(self.awake_until, t + self.verify)
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
