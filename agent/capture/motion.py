"""Motion detection on the luma plane: adaptive background subtraction, robust by design.

Pure: a luma array and a timestamp in, a MotionResult out. No PyAV, no I/O.

The scene model, per analysis pixel:
- a background that follows slow changes (time constant `background_time`) and absorbs objects
  that stop moving (slower, `absorb_time`);
- a noise level (mean absolute deviation from the background), so that each pixel's threshold is
  `max(threshold, NOISE_K * noise)`: grainy night pixels, compression shimmer and foliage that
  the mask misses raise their own thresholds instead of firing;
- a global gain, re-estimated on every frame from the median ratio of background to frame, so
  auto-exposure and dusk do not read as change and the contrast of a dim object is restored.

A pixel that differs from the background is *moving* only if it also changed between analyses
within the last `MOVE_HOLD` seconds: an object that stops ends the event after the post-roll
instead of holding it open until it is absorbed, and the ghost a departing object leaves is not
motion either. Changed pixels must be spatially coherent (a 3x3 neighbourhood vote) before
they count, which removes the speckle a noise threshold always lets through.

A sudden change over a large part of the frame (a light switch, a day/night IR switch, the
camera's exposure jumping) is told apart from a large moving object by structure: block-wise
normalised cross-correlation between frame and background. Light changes the brightness of a
block but keeps its texture; an object replaces the texture. A light change re-baselines the
background at once; a person walking through it differs from the new background from the next
analysis on, so it is still seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.config import MotionSettings

NOISE_K = 4.0  # per-pixel threshold in units of the pixel's mean absolute deviation
NEIGHBOURS = 4  # a changed pixel needs this many changed pixels in its 3x3 block (itself included)
GLOBAL_FRACTION = 0.25  # this much of the frame changing at once triggers the structure check
BLOCK = 8  # block size (analysis px) of the structure check
STRUCTURE_NCC = 0.5  # a block whose correlation with the background is below this has new content
FLAT_STD = 3.0  # a block flatter than this (luma std) has no texture to compare
RESIDUAL_K = 4.0  # new content leaves a residual over 4x the noise variance (2x its std)
MAD_TO_STD = 1.25  # Gaussian noise: std = 1.25 x mean absolute deviation
CLIP_LEVELS = (6, 249)  # luma at or beyond these is clipped: no texture survives there
CLIPPED_FRACTION = 0.25  # a block this clipped cannot tell light from content
NOISE_TIME = 10.0  # s, time constant of the noise estimate
SETTLE_TIME = 1.5  # s of fast adaptation after a re-baseline (exposure settles, noise re-learnt)
MOVE_HOLD = 1.0  # s a pixel stays "moving" after it last changed between two analyses
WARMUP_FRAMES = 3  # analysed frames needed before the first motion verdict
GAIN_LIMITS = (0.2, 5.0)


@dataclass(frozen=True)
class MotionResult:
    t: float
    motion: bool
    score: float  # changed fraction of the unmasked frame, 0..1
    box: tuple[float, float, float, float] | None  # x0, y0, x1, y1 of the change, 0..1 coords
    global_change: bool = False  # a light/IR/exposure change re-baselined the background
    warming_up: bool = False


def analysis_factor(width: int, analysis_width: int) -> int:
    """Integer reduction factor that brings `width` to about `analysis_width`."""
    return max(1, round(width / analysis_width))


def downscale(luma: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Reduce a (possibly strided) luma plane by `factor` with a few samples per block.

    Averaging 4 samples of each factor x factor block halves the noise for ~1 % of the cost of
    a full block mean (0.1 ms vs 6 ms at 1080p): what matters is cheap, not exact.
    """
    h, w = shape
    if factor == 1:
        return luma[:h, :w].astype(np.float32)
    offsets = (factor // 4, (3 * factor) // 4) if factor >= 4 else (0, factor // 2)
    acc = np.zeros((h, w), np.float32)
    for dy in offsets:
        for dx in offsets:
            acc += luma[dy : dy + h * factor : factor, dx : dx + w * factor : factor]
    acc *= 1.0 / len(offsets) ** 2
    return acc


def rasterize(polygons: Sequence[Sequence[tuple[float, float]]], w: int, h: int) -> np.ndarray:
    """Boolean (h, w) array, True inside any polygon (0..1 coords, even-odd rule, pixel centres)."""
    inside = np.zeros((h, w), bool)
    ys, xs = np.mgrid[0:h, 0:w]
    px = (xs + 0.5) / w
    py = (ys + 0.5) / h
    for poly in polygons:
        hit = np.zeros((h, w), bool)
        n = len(poly)
        for i in range(n):
            (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
            if y1 == y2:
                continue
            crosses = (py >= min(y1, y2)) & (py < max(y1, y2))
            x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
            hit ^= crosses & (px < x_at)
        inside |= hit
    return inside


def _median(a: np.ndarray) -> float:
    """Median of a 1-D array the caller owns (partitioned in place: no copy)."""
    n = a.size
    k = n // 2
    a.partition(k)
    if n % 2:
        return float(a[k])
    return 0.5 * float(a[k] + a[:k].max())


def _box_count(mask: np.ndarray) -> np.ndarray:
    """Number of set pixels in each pixel's 3x3 neighbourhood."""
    m = mask.view(np.uint8)
    p = np.pad(m, 1)
    rows = p[:-2] + p[1:-1] + p[2:]
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]


def _block_sums(a: np.ndarray, hb: int, wb: int) -> np.ndarray:
    return a[: hb * BLOCK, : wb * BLOCK].reshape(hb, BLOCK, wb, BLOCK).sum(axis=(1, 3))


def structure_changed(
    frame: np.ndarray, background: np.ndarray, noise: np.ndarray | None = None
) -> np.ndarray:
    """Per-block verdict: did the content change (True) or only its brightness (False)?

    Zero-mean normalised cross-correlation is invariant to a block's gain and offset, which is
    what a light switch, IR switch or exposure change does to a static scene. Noise lowers the
    correlation of faint texture (more so when the light goes down), so with a per-pixel `noise`
    level (mean absolute deviation) a block also needs a residual — what the best gain and
    offset fit of the background leaves unexplained — well above that noise. Blocks flat in
    both images, or mostly clipped to black or white in the new one (light blows out
    highlights), carry no structure to compare and are called unchanged.
    """
    h, w = frame.shape
    hb, wb = h // BLOCK, w // BLOCK
    n = BLOCK * BLOCK
    sx, sb = _block_sums(frame, hb, wb), _block_sums(background, hb, wb)
    sxx = _block_sums(frame * frame, hb, wb)
    sbb = _block_sums(background * background, hb, wb)
    sxb = _block_sums(frame * background, hb, wb)
    vx = np.maximum(sxx - sx * sx / n, 0.0)
    vb = np.maximum(sbb - sb * sb / n, 0.0)
    cov = sxb - sx * sb / n
    ncc = cov / np.sqrt(vx * vb + 1e-6)
    changed = ncc < STRUCTURE_NCC
    if noise is not None:
        residual = vx * (1.0 - np.clip(ncc, -1.0, 1.0) ** 2)  # summed over the block's n pixels
        noise_var = _block_sums((MAD_TO_STD * noise) ** 2, hb, wb)
        changed &= residual > RESIDUAL_K * noise_var
    flat = (vx < n * FLAT_STD**2) & (vb < n * FLAT_STD**2)
    clipped = _block_sums(((frame >= CLIP_LEVELS[1]) | (frame <= CLIP_LEVELS[0])), hb, wb)
    return changed & ~flat & (clipped < CLIPPED_FRACTION * n)


class MotionDetector:
    """Feed it luma planes in time order; it answers whether something moved."""

    def __init__(
        self,
        settings: MotionSettings,
        width: int,
        height: int,
        mask: Sequence[Sequence[tuple[float, float]]] = (),
    ) -> None:
        self.settings = settings
        self.size = (width, height)  # of the frames it accepts
        self.factor = analysis_factor(width, settings.analysis_width)
        self.shape = (height // self.factor, width // self.factor)
        h, w = self.shape
        self.valid = ~rasterize(mask, w, h) if mask else np.ones(self.shape, bool)
        self.valid_count = max(1, int(self.valid.sum()))
        self.min_pixels = max(4.0, settings.min_area / 100.0 * self.valid_count)
        # The gain is a median over a sparse grid of unmasked pixels (every 3rd row and column,
        # ~6,000 at the default analysis width): plenty for a median, a third of the cost of
        # every other row and column. Indices, not a boolean mask: `take` is the cheaper gather.
        sample = np.zeros(self.shape, bool)
        sample[1::3, 1::3] = True
        sample &= self.valid
        if not sample.any():
            sample = self.valid
        self._sample = np.flatnonzero(sample)
        self.background: np.ndarray | None = None
        self.last_frame: np.ndarray | None = None  # the latest analysis image, as decoded
        self.noise = np.full(self.shape, settings.threshold / NOISE_K, np.float32)
        self.last_change = np.full(self.shape, -np.inf, np.float32)  # when each pixel last changed
        self.frames = 0
        self.last_t: float | None = None
        self.settle_until = -math.inf

    def analyse(self, luma: np.ndarray, t: float) -> MotionResult:
        raw = downscale(luma, self.factor, self.shape)
        dt = 0.0 if self.last_t is None else min(max(t - self.last_t, 0.0), 5.0)
        self.last_t = t
        self.frames += 1
        previous, self.last_frame = self.last_frame, raw
        if self.background is None:
            self.background = raw.copy()
            return MotionResult(t, False, 0.0, None, warming_up=True)

        # The background follows the raw frames; the gain only bridges the lag while the light
        # changes. (Learning gain-corrected frames would let any bias in the gain compound.)
        bg = self.background
        gain = self._gain(raw, bg)
        frame = raw * gain if gain != 1.0 else raw
        diff = np.abs(frame - bg)
        s = self.settings
        settling = t < self.settle_until
        if self.frames <= WARMUP_FRAMES:
            self._learn(raw, diff, np.zeros(self.shape, bool), 0.5, 0.5)
            return MotionResult(t, False, 0.0, None, warming_up=True)

        thresh = np.maximum(self.noise * NOISE_K, s.threshold)
        changed = (diff > thresh) & self.valid
        large = changed.sum() > GLOBAL_FRACTION * self.valid_count
        if large and self._is_light_change(raw, bg, changed):
            # Re-baseline: the new light is the new background. What moves through it differs
            # from the new background from the next analysis on, so it is still caught.
            bg[...] = raw
            self.last_change.fill(-np.inf)
            self.settle_until = t + SETTLE_TIME
            return MotionResult(t, False, 0.0, None, global_change=True)
        if previous is not None:
            self.last_change[np.abs(raw - previous) > thresh] = t
        hold = max(MOVE_HOLD, 2.5 * dt)  # at a low detect_fps, span at least two analyses
        changed &= (t - self.last_change) <= hold

        moving = changed & (_box_count(changed) >= NEIGHBOURS)
        area = int(moving.sum())
        motion = area >= self.min_pixels

        a_bg = 1.0 - math.exp(-dt / s.background_time)
        a_fg = 1.0 - math.exp(-dt / (s.absorb_time / 2.0))  # contrast falls ~e^2 by absorb_time
        a_noise = 1.0 - math.exp(-dt / (SETTLE_TIME / 3 if settling else NOISE_TIME))
        if settling:
            a_bg = max(a_bg, 1.0 - math.exp(-dt / (SETTLE_TIME / 3)))
        self._learn(raw, np.minimum(diff, thresh), moving, a_bg, a_fg, a_noise)

        box = None
        if motion:
            rows = np.flatnonzero(moving.any(axis=1))
            cols = np.flatnonzero(moving.any(axis=0))
            h, w = self.shape
            box = (cols[0] / w, rows[0] / h, (cols[-1] + 1) / w, (rows[-1] + 1) / h)
        return MotionResult(t, motion, area / self.valid_count, box)

    def _gain(self, frame: np.ndarray, bg: np.ndarray) -> float:
        f_med = _median(np.take(frame, self._sample))
        b_med = _median(np.take(bg, self._sample))
        gain = (b_med + 1.0) / (f_med + 1.0)
        if abs(gain - 1.0) < 0.01:
            return 1.0
        return min(max(gain, GAIN_LIMITS[0]), GAIN_LIMITS[1])

    def _is_light_change(self, raw: np.ndarray, bg: np.ndarray, changed: np.ndarray) -> bool:
        """A large sudden change: light (texture kept) or a big object (texture replaced)?"""
        blocks = structure_changed(raw, bg, self.noise)
        hb, wb = blocks.shape
        structural = changed[: hb * BLOCK, : wb * BLOCK] & np.repeat(
            np.repeat(blocks, BLOCK, axis=0), BLOCK, axis=1
        )
        return structural.sum() <= GLOBAL_FRACTION * self.valid_count

    def _learn(
        self,
        frame: np.ndarray,
        diff: np.ndarray,
        moving: np.ndarray,
        a_bg: float,
        a_fg: float,
        a_noise: float | None = None,
    ) -> None:
        bg = self.background
        assert bg is not None
        rate = np.where(moving, np.float32(a_fg), np.float32(a_bg))
        bg += rate * (frame - bg)
        a_n = a_bg if a_noise is None else a_noise
        still = ~moving
        self.noise[still] += np.float32(a_n) * (diff[still] - self.noise[still])
        np.maximum(self.noise, 0.25, out=self.noise)
