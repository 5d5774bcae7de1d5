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
LIT_FRACTION = 0.02  # ...or this much while the light changes, if no more than...
LIT_CONTENT = 0.1  # ...this much of it has new content (a lamp lighting its own pool)
BLOCK = 8  # block size (analysis px) of the structure check
STRUCTURE_NCC = 0.5  # a block whose correlation with the background is below this has new content
FLAT_STD = 3.0  # a block flatter than this (luma std) has no texture to compare
RESIDUAL_K = 4.0  # new content leaves a residual over 4x the noise variance (2x its std)
MAD_TO_STD = 1.25  # Gaussian noise: std = 1.25 x mean absolute deviation
CLIP_LEVELS = (6, 249)  # luma at or beyond these is clipped: no texture survives there
CLIPPED_FRACTION = 0.25  # a block this clipped cannot tell light from content
NOISE_TIME = 10.0  # s, time constant of the noise estimate
SETTLE_TIME = 1.5  # s of fast adaptation after a re-baseline (exposure settles, noise re-learnt)
SETTLE_MARGIN = 1.75  # thresholds are this much wider while settling
MOVE_HOLD = 1.0  # s a pixel stays "moving" after it last changed between two analyses
INIT_TIME = 1.0  # s of frames the first background is the per-pixel median of...
INIT_FRAMES = 5  # ...and at least this many: the first verdict comes after both
GAIN_LIMITS = (0.2, 5.0)
TONE_BINS = 8  # background levels the photometric fit compares the frame at
TONE_REORDER = 10  # analyses between re-sorts of the sample by background level
CLIP_SUSPECT = (24.0, 228.0)  # a picture reaching these levels may be clipped (TV or full range)
RELIGHT_LEVELS = 6.0  # a fitted light change moving mid-grey this much re-expresses the bg...
RELIGHT_GAIN = 0.05  # ...or its gain this much (log)...
RELIGHT_FRACTION = 0.05  # ...if it leaves no more than this much of the frame changed...
RELIGHT_AFTER = 3.0  # ...within this many s of the light moving between two frames
STEP_LEVELS, STEP_GAIN = 15.0, 0.14  # a step in the light: its noise is re-learnt (settling)
STABLE_LEVELS = 2.0  # the frame's levels moved less than this since the last: light steady
NEAR_CLIP = 12.0  # levels within this of a clipped extreme are only known as a bound


@dataclass(frozen=True)
class MotionResult:
    t: float
    motion: bool
    score: float  # changed fraction of the unmasked frame, 0..1
    box: tuple[float, float, float, float] | None  # x0, y0, x1, y1 of the change, 0..1 coords
    global_change: bool = False  # a light/IR/exposure change re-baselined the background
    warming_up: bool = False
    steady: bool = True  # the light is steady: not changing now nor settling after a step


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


def _clip_levels(a: np.ndarray) -> tuple[float, float]:
    """Levels at or below / at or above which `a` may be clipped to black / white (-inf, inf:
    it is not). Clipping is a soft edge after noise and the analysis' averaging, so it takes in
    NEAR_CLIP levels next to the extreme, and only extremes near the ends of the range count."""
    lo, hi = float(a.min()), float(a.max())
    return (
        lo + NEAR_CLIP if lo <= CLIP_SUSPECT[0] else -math.inf,
        hi - NEAR_CLIP if hi >= CLIP_SUSPECT[1] else math.inf,
    )


def _mid(a: np.ndarray) -> float:
    """Median of a small array (np.median costs ~30 us of overhead per call)."""
    s = np.sort(a, axis=None)
    n = s.size
    return float(s[n // 2]) if n % 2 else 0.5 * float(s[n // 2 - 1] + s[n // 2])


def _densest(mask: np.ndarray, cells: int = 16) -> int:
    """Most set pixels in any 2x2 cells of a `cells` x `cells` grid (1/8 of each side)."""
    h, w = mask.shape
    ch, cw = max(1, h // cells), max(1, w // cells)
    hb, wb = h // ch, w // cw
    c = mask[: hb * ch, : wb * cw].reshape(hb, ch, wb, cw).sum(axis=(1, 3), dtype=np.int32)
    if hb > 1 and wb > 1:
        c = c[:-1, :-1] + c[1:, :-1] + c[:-1, 1:] + c[1:, 1:]
    return int(c.max())


def _local_mean(a: np.ndarray, size: int) -> np.ndarray:
    """Each pixel's `size` x `size` block mean (edge blocks: what of them is inside)."""
    h, w = a.shape
    hb, wb = -(-h // size), -(-w // size)
    p = np.pad(a, ((0, hb * size - h), (0, wb * size - w)), mode="edge")
    m = p.reshape(hb, size, wb, size).mean(axis=(1, 3), dtype=np.float32)
    return np.repeat(np.repeat(m, size, axis=0), size, axis=1)[:h, :w]


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
    highlights, or a light switched off brings back what was blown out), carry no structure to
    compare and are called unchanged.
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
    lo, hi = CLIP_LEVELS
    clipped = _block_sums(
        (frame >= hi) | (frame <= lo) | (background >= hi) | (background <= lo), hb, wb
    )
    return changed & ~flat & (clipped < CLIPPED_FRACTION * n)


class ToneFit:
    """The photometric fit of a frame to the background: light, exposure and contrast changes
    act on the whole picture as one tone curve, fitted as gain and offset."""

    def __init__(self, sample: np.ndarray) -> None:
        self._sample = sample  # indices of a sparse grid of unmasked analysis pixels
        self._bins: np.ndarray | None = None  # the sample, by background level, in TONE_BINS rows
        self.tone = (1.0, 0.0)  # last fit: background = gain * frame + offset
        self._levels_seen: np.ndarray | None = None  # the last frame's level in each bin
        self.light_moved = False  # the frame's levels moved since the last frame (the light)
        self._levels = (-math.inf, math.inf, -math.inf, math.inf)  # near-clipped: frame, bg

    def rebin(self) -> None:
        """The background was replaced: sort the sample by its levels afresh."""
        self._bins = None

    def normalise(
        self, raw: np.ndarray, bg: np.ndarray, frames: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The frame in background units, and the background to compare it with.

        Photometric normalisation: light, exposure and contrast changes act on the whole
        picture as one tone curve. It is fitted as gain and offset, robustly, through the
        median frame level at each of TONE_BINS background levels of a sparse sample
        (Theil-Sen over the pairs of levels), so an object covering a good part of one level
        does not move the fit. Levels next to a clipped black or white are left out of the
        fit, and compared as bounds: a pixel the brighter light drove into white is only known
        to be at least as bright as the fit predicts, one the background holds as white at
        least as bright as it.
        """
        if self._bins is None or frames % TONE_REORDER == 0:
            b = np.take(bg, self._sample[::2])  # half the sample: plenty for 8 medians
            n = b.size // TONE_BINS * TONE_BINS
            self._bins = self._sample[::2][np.argsort(b)[:n]].reshape(TONE_BINS, -1)
        bins = self._bins
        fs, bs = np.take(raw, bins), np.take(bg, bins)
        f_lo, f_hi = _clip_levels(fs)
        b_lo, b_hi = _clip_levels(bs)
        self._levels = (f_lo, f_hi, b_lo, b_hi)
        m = bins.shape[1] // 2
        fs.partition(m, axis=1)
        bs.partition(m, axis=1)
        fm, bm = fs[:, m], bs[:, m]
        seen, self._levels_seen = self._levels_seen, fm.copy()
        self.light_moved = seen is not None and _mid(np.abs(fm - seen)) >= STABLE_LEVELS
        ok = (fm < f_hi) & (fm > f_lo) & (bm < b_hi) & (bm > b_lo)
        if ok.sum() >= 2:
            fm, bm = fm[ok], bm[ok]
        i, j = np.triu_indices(fm.size, 1)
        apart = bm[j] - bm[i] >= 8.0
        if apart.sum() >= 3:
            i, j = i[apart], j[apart]
            slope = _mid((fm[j] - fm[i]) / (bm[j] - bm[i]))  # frame per background
            slope = min(max(slope, 1.0 / GAIN_LIMITS[1]), 1.0 / GAIN_LIMITS[0])
            gain = 1.0 / slope
            offset = _mid(bm - fm * gain)
        else:  # too few distinct levels (a flat picture): the ratio of the medians
            gain = (_mid(bm) + 1.0) / (_mid(fm) + 1.0)
            gain, offset = min(max(gain, GAIN_LIMITS[0]), GAIN_LIMITS[1]), 0.0
        if abs(gain - 1.0) < 0.01 and abs(offset + 128.0 * (gain - 1.0)) < 1.0:
            self.tone = (1.0, 0.0)
            return raw, bg
        self.tone = (gain, offset)
        frame = raw * np.float32(gain)
        frame += np.float32(offset)
        # Near-clipped pixels are bounds: a background pixel near white may hide anything
        # brighter, a frame pixel near white anything brighter than it shows (and so for black).
        if b_hi < math.inf:
            np.minimum(frame, np.maximum(bg, np.float32(b_hi)), out=frame)
        if b_lo > -math.inf:
            np.maximum(frame, np.minimum(bg, np.float32(b_lo)), out=frame)
        if f_hi < math.inf:
            bg = np.minimum(bg, np.maximum(frame, np.float32(f_hi * gain + offset)))
        if f_lo > -math.inf:
            bg = np.maximum(bg, np.minimum(frame, np.float32(f_lo * gain + offset)))
        return frame, bg

    def relit(self, levels: float = RELIGHT_LEVELS, gain_step: float = RELIGHT_GAIN) -> bool:
        """Does the last photometric fit move mid-grey by `levels`, or the gain by `gain_step`
        (log)?"""
        gain, offset = self.tone
        return abs(128.0 * gain + offset - 128.0) >= levels or abs(math.log(gain)) >= gain_step

    def relight(self, bg: np.ndarray, noise: np.ndarray, raw: np.ndarray, step: bool) -> None:
        """Re-express the background in the frame's light, once the fit explains the frame.

        Learning alone would take `background_time` to follow a step in the light, and where
        the light clipped to white (or black) on one side of the step the blend of old and new
        background fits neither (a false change once the light goes back). Where the frame is
        clipped, the background goes no further than the clip; after a step, background pixels
        next to a clipped level (their value only a bound) take the frame's."""
        gain, offset = self.tone
        f_lo, f_hi, b_lo, b_hi = self._levels
        lost = ((bg >= b_hi) | (bg <= b_lo)) if step else None
        bg -= np.float32(offset)
        bg *= np.float32(1.0 / gain)
        if f_lo > -math.inf or f_hi < math.inf:
            np.clip(bg, f_lo - NEAR_CLIP, f_hi + NEAR_CLIP, out=bg)
        if lost is not None:
            np.copyto(bg, raw, where=lost)
        if step:  # a first guess: sensor noise scales with the light (AGC makes it grow instead
            # as the light fades slowly, which learning follows)
            noise *= np.float32(1.0 / gain)
            np.maximum(noise, 0.25, out=noise)
        self.tone = (1.0, 0.0)


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
        self.fit = ToneFit(np.flatnonzero(sample))
        self.background: np.ndarray | None = None
        self.last_frame: np.ndarray | None = None  # the latest analysis image, as decoded
        self.noise = np.full(self.shape, settings.threshold / NOISE_K, np.float32)
        self.last_change = np.full(self.shape, -np.inf, np.float32)  # when each pixel last changed
        self.frames = 0
        self.moving: np.ndarray | None = None  # the last verdict's moving pixels
        self.last_t: float | None = None
        self.settle_until = -math.inf
        self._init: list[np.ndarray] = []  # frames the first background is made of
        self._init_t = 0.0
        self._moved_at = -math.inf  # when the light last moved between two frames

    def analyse(self, luma: np.ndarray, t: float) -> MotionResult:
        raw = downscale(luma, self.factor, self.shape)
        dt = 0.0 if self.last_t is None else min(max(t - self.last_t, 0.0), 5.0)
        self.last_t = t
        self.frames += 1
        previous, self.last_frame = self.last_frame, raw
        if self.background is None and not self._initialise(raw, t):
            return MotionResult(t, False, 0.0, None, warming_up=True)

        # The background follows the raw frames; the photometric fit only bridges the lag while
        # the light changes. (Learning corrected frames would let any bias in the fit compound.)
        bg = self.background
        assert bg is not None
        frame, ref = self.fit.normalise(raw, bg, self.frames)
        diff = np.abs(frame - ref)
        s = self.settings
        settling = t < self.settle_until
        thresh = np.maximum(self.noise * NOISE_K, s.threshold)
        if settling:  # the noise of a new light is being learnt, not known: a wider margin
            thresh *= SETTLE_MARGIN
        changed = (diff > thresh) & self.valid
        # A large change, or a fair part of the picture changing while the light moves (a lamp
        # lighting its own pool: more than one tone curve) is checked for structure.
        changing = self.fit.light_moved
        n_changed = changed.sum()
        large = n_changed > GLOBAL_FRACTION * self.valid_count
        lit = changing and n_changed > LIT_FRACTION * self.valid_count
        if (large or lit) and self._is_light_change(raw, bg, changed, not large):
            # Re-baseline: the new light is the new background. What moves through it differs
            # from the new background from the next analysis on, so it is still caught.
            bg[...] = raw
            self.fit.rebin()
            self.last_change.fill(-np.inf)
            self.settle_until = t + SETTLE_TIME
            return MotionResult(t, False, 0.0, None, global_change=True, steady=False)
        unsteady = changing or settling or self.fit.relit()
        if unsteady and changed.any():
            # While the light changes, a change the tone fit leaves (a lamp's pool of light, a
            # shadow's edge) is told from an object block by block, as above: where the
            # texture is kept it is light, and the background takes the new look there at once.
            lit = changed & ~self._content(raw, bg)
            if lit.any():
                np.copyto(bg, frame, where=lit)
                changed &= ~lit
        if previous is not None:
            self.last_change[np.abs(raw - previous) > thresh] = t
        hold = max(MOVE_HOLD, 2.5 * dt)  # at a low detect_fps, span at least two analyses
        changed &= (t - self.last_change) <= hold

        moving = changed & (_box_count(changed) >= NEIGHBOURS)
        self.moving = moving  # for pictures of what it saw (agent/pictures.py)
        area = int(moving.sum())
        motion = area >= self.min_pixels
        if motion and unsteady:
            # While the light changes, what the fit does not explain is spread thinly over
            # the picture; an object is in one place: the least area must be in one region.
            motion = _densest(moving) >= self.min_pixels

        a_bg = 1.0 - math.exp(-dt / s.background_time)
        a_fg = 1.0 - math.exp(-dt / (s.absorb_time / 2.0))  # contrast falls ~e^2 by absorb_time
        a_noise = 1.0 - math.exp(-dt / (SETTLE_TIME / 3 if settling else NOISE_TIME))
        if settling:
            a_bg = max(a_bg, 1.0 - math.exp(-dt / (SETTLE_TIME / 3)))
        # Re-express the background once the light stopped changing (not at every step of a
        # ramp: each fit's error would compound) and the fit explains the frame.
        # A slow drift (dusk) is left to learning: only after the light moved between frames.
        if changing:
            self._moved_at = t
        relit = (
            t - self._moved_at <= RELIGHT_AFTER
            and not changing
            and self.fit.relit()
            and changed.sum() <= RELIGHT_FRACTION * self.valid_count
        )
        if relit:
            step = self.fit.relit(STEP_LEVELS, STEP_GAIN)
            if step:  # a step in the light: its noise is to be learnt
                self.settle_until = t + SETTLE_TIME
            self.fit.relight(bg, self.noise, raw, step)
        self._learn(raw, np.minimum(diff, thresh), moving, a_bg, a_fg, a_noise)
        if settling:  # noise learnt fast is noisy per pixel: none quieter than its neighbours
            np.maximum(self.noise, _local_mean(self.noise, BLOCK), out=self.noise)

        box = None
        if motion:
            rows = np.flatnonzero(moving.any(axis=1))
            cols = np.flatnonzero(moving.any(axis=0))
            h, w = self.shape
            box = (cols[0] / w, rows[0] / h, (cols[-1] + 1) / w, (rows[-1] + 1) / h)
        steady = not (relit or changing or settling or t < self.settle_until)
        return MotionResult(t, motion, area / self.valid_count, box, steady=steady)

    def _initialise(self, raw: np.ndarray, t: float) -> bool:
        """Collect the first INIT_TIME s of frames; then the background is their per-pixel
        median (what something moving through covered in fewer than half of them is not in it)
        and the noise their spread about it. True once the background can be trusted: from
        the first frame INIT_TIME s (and INIT_FRAMES frames) after the first one on."""
        if not self._init:
            self._init_t = t
        if len(self._init) < INIT_FRAMES or t - self._init_t < INIT_TIME - 1e-6:
            self._init.append(raw)
            return False
        stack = np.stack(self._init)
        self._init = []
        n = len(stack)
        self.background = np.median(stack, axis=0).astype(np.float32)
        # Each pixel's spread about the median (the largest deviation left out: something
        # may have passed), scaled to a mean absolute deviation; a few frames make a poor
        # estimate for one pixel, so no pixel is taken as quieter than its 8x8 neighbourhood.
        dev = np.sort(np.abs(stack - self.background), axis=0)[: n - 1].mean(axis=0)
        dev *= 1.0 + 4.1 / n  # E[trimmed spread] ~ 0.8 sigma / (1 + 4.1/n) for Gaussian noise
        self.noise = np.maximum(np.maximum(dev, _local_mean(dev, BLOCK)), 0.25)
        return True

    def _content(self, raw: np.ndarray, bg: np.ndarray) -> np.ndarray:
        """Per pixel: is it in a block whose content changed (not only its light)? The rows
        and columns short of a whole block count as changed content."""
        blocks = structure_changed(raw, bg, self.noise)
        hb, wb = blocks.shape
        out = np.ones(self.shape, bool)
        out[: hb * BLOCK, : wb * BLOCK] = np.repeat(np.repeat(blocks, BLOCK, axis=0), BLOCK, axis=1)
        return out

    def _is_light_change(
        self, raw: np.ndarray, bg: np.ndarray, changed: np.ndarray, mostly: bool = False
    ) -> bool:
        """A large sudden change: light (texture kept) or a big object (texture replaced)?
        `mostly`: a smaller change while the light moves is light only if nearly all of it
        kept its texture (an object walking through it is a good part of what changed)."""
        structural = int((changed & self._content(raw, bg)).sum())
        if mostly:
            return structural <= LIT_CONTENT * int(changed.sum())
        return structural <= GLOBAL_FRACTION * self.valid_count

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
        # In place, with one scratch array: boolean gathers and scatters cost 5x as much.
        delta = frame - bg
        delta *= np.where(moving, np.float32(a_fg), np.float32(a_bg))
        bg += delta
        a_n = a_bg if a_noise is None else a_noise
        np.subtract(diff, self.noise, out=delta)  # the noise learns where nothing moves
        delta *= np.float32(a_n)
        delta[moving] = 0.0
        self.noise += delta
        np.maximum(self.noise, 0.25, out=self.noise)
