"""Pick a few telling images per clip, from frames the detector already decoded.

Pure: scores, thumbnails and opaque image handles in, a choice out. Encoding the chosen images
to JPEG happens at the edge (agent/capture/jpeg.py).

A good keyframe shows the moving object large, sharp and whole, in steady light; the set is
spread over the event and no two images are alike, and none is a blank or a flash. A frame
whose motion touches the picture's edge (the object is coming in or leaving: part of it is
outside) or taken while the light changes is a *fallback*: picked only when the good ones run
out. One whose motion is a trace of the event's strongest (a flicker after the object left)
is not picked at all: fewer images rather than one of nothing. The candidate pool is bounded:
when it is full, of the two candidates closest in time the weaker one goes, so the pool keeps
both spread and quality however long the event runs, and memory stays fixed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

BLANK_MEAN = (16.0, 240.0)  # a frame darker/brighter than this on average is blank or a flash
BLANK_STD = 4.0  # a frame with less contrast than this shows nothing
ALIKE_LEVELS = 12.0  # luma difference that counts as a visible change between two thumbnails
ALIKE_FRACTION = 0.0005  # two thumbnails differing in fewer pixels than this are the same picture
EDGE = 0.01  # motion this close (0..1 coords) to the picture's side or bottom edge touches it
FALLBACK = 0.25  # score factor of a fallback frame (edge or light change)
WEAK = 0.3  # a frame scoring under this fraction of the event's best is never picked
CANDIDATE_WINDOW = 1.0  # s; of the frames with motion in each window, one keyframe candidate


@dataclass
class Candidate:
    t: float
    score: float
    thumb: np.ndarray = field(repr=False)  # small luma image, for likeness
    image: Any = field(default=None, repr=False)  # the caller's handle on the full image
    good: bool = True  # False: a fallback (motion at the edge, or the light changing)
    steady: bool = True  # False: taken while the light changed (the last fallback)


def sharpness(luma: np.ndarray, box: tuple[float, float, float, float] | None) -> float:
    """Variance of the Laplacian inside `box` (0..1 coords), on at most ~160x160 samples."""
    h, w = luma.shape
    if box is not None:
        x0, y0, x1, y1 = box
        luma = luma[
            int(y0 * h) : max(int(y1 * h), int(y0 * h) + 3),
            int(x0 * w) : max(int(x1 * w), int(x0 * w) + 3),
        ]
    step = max(1, max(luma.shape) // 160)
    a = luma[::step, ::step].astype(np.float32)
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = a[1:-1, :-2] + a[1:-1, 2:] + a[:-2, 1:-1] + a[2:, 1:-1] - 4.0 * a[1:-1, 1:-1]
    return float(lap.var())


def quality(area: float, sharp: float, good: bool = True) -> float:
    """Bigger and sharper is better; sharpness counts with diminishing returns."""
    return math.sqrt(max(area, 0.0)) * math.log1p(max(sharp, 0.0)) * (1.0 if good else FALLBACK)


def at_edge(box: tuple[float, float, float, float] | None) -> bool:
    """Does the motion box touch the left, right or bottom edge (the object is cut off)?

    The top edge is left out: a standing person's head seldom reaches it, a near one's does."""
    if box is None:
        return False
    x0, _, x1, y1 = box
    return x0 <= EDGE or x1 >= 1.0 - EDGE or y1 >= 1.0 - EDGE


def _shown(c: Candidate) -> float:
    """How much a candidate shows: its score with a fallback's discount undone."""
    return c.score if c.good else c.score / FALLBACK


def is_blank(thumb: np.ndarray) -> bool:
    mean = float(thumb.mean())
    return not BLANK_MEAN[0] <= mean <= BLANK_MEAN[1] or float(thumb.std()) < BLANK_STD


def alike(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    changed = np.count_nonzero(np.abs(a - b) > ALIKE_LEVELS)
    return changed < ALIKE_FRACTION * a.size


class KeyframePicker:
    def __init__(self, count: int, capacity: int | None = None) -> None:
        self.count = count
        self.capacity = max(capacity or 2 * count, count, 1)
        self.pool: list[Candidate] = []  # in time order

    def would_keep(self, t: float, score: float) -> bool:
        """Whether a candidate would survive eviction; ask before preparing its image."""
        if self.count == 0:
            return False
        if len(self.pool) < self.capacity:
            return True
        return self._victim(self.pool + [Candidate(t, score, np.empty(0))]) != len(self.pool)

    def add(self, cand: Candidate) -> None:
        if self.count == 0 or is_blank(cand.thumb):
            return
        self.pool.append(cand)
        self.pool.sort(key=lambda c: c.t)
        while len(self.pool) > self.capacity:
            del self.pool[self._victim(self.pool)]

    def drop_before(self, t: float) -> None:
        self.pool = [c for c in self.pool if c.t >= t]

    def clear(self) -> None:
        self.pool = []

    def pick(self, start: float, end: float) -> list[Candidate]:
        """Up to `count` candidates within [start, end): spread in time, strong, all different."""
        inside = [c for c in self.pool if start <= c.t < end]
        chosen: list[Candidate] = []

        strong = max((_shown(c) for c in inside), default=0.0)
        fair = [c for c in inside if _shown(c) >= WEAK * strong]  # others show next to nothing
        # The good; then the cut off (most of the object may be in); then in changing light.
        for cands in ([c for c in fair if c.good], [c for c in fair if c.steady], fair):
            self._pick(cands, chosen)
        return sorted(chosen, key=lambda c: c.t)

    def _pick(self, cands: list[Candidate], chosen: list[Candidate]) -> None:
        """Add to `chosen`, up to `count`: the best of each time bin, then the best left."""
        if not cands:
            return

        def take(c: Candidate) -> None:
            if len(chosen) < self.count and all(not alike(c.thumb, o.thumb) for o in chosen):
                chosen.append(c)

        lo, hi = cands[0].t, cands[-1].t
        width = (hi - lo) / self.count or 1.0
        for i in range(self.count):
            in_bin = [
                c
                for c in cands
                if i * width <= c.t - lo < (i + 1) * width or (i == self.count - 1 and c.t == hi)
            ]
            if in_bin:
                take(max(in_bin, key=lambda c: c.score))
        for c in sorted(cands, key=lambda c: -c.score):
            if c not in chosen:
                take(c)

    @staticmethod
    def _victim(pool: list[Candidate]) -> int:
        """Index to evict: a candidate showing next to nothing beside the strongest (WEAK) if
        there is one, else the weaker of the two candidates closest in time."""
        weakest = min(range(len(pool)), key=lambda i: _shown(pool[i]))
        if _shown(pool[weakest]) < WEAK * max(_shown(c) for c in pool):
            return weakest
        order = sorted(range(len(pool)), key=lambda i: pool[i].t)
        best_gap, victim = math.inf, order[-1]
        for a, b in zip(order, order[1:], strict=False):
            gap = pool[b].t - pool[a].t
            if gap < best_gap:
                best_gap = gap
                victim = a if pool[a].score < pool[b].score else b
        return victim


class Images(Protocol):
    """How a stream keeps candidate images (agent/capture/jpeg.py's JpegImages: as JPEGs;
    agent/capture/substream.py's GopImages: as main-stream packets, decoded once chosen)."""

    def prepare(self, image: Any) -> Any:
        """A candidate's image as the pool keeps it."""

    def image(self, kept: Any) -> Any | None:
        """A chosen candidate's image to write (JPEG bytes or a picture); None: it cannot be."""


class Candidates:
    """One stream's keyframe candidates: the best frame of each CANDIDATE_WINDOW goes to the
    picker, and only that one's image is prepared for the pool, not every analysed frame of a
    long event."""

    def __init__(self, picker: KeyframePicker, images: Images) -> None:
        self.picker = picker
        self.images = images
        self.pending: Candidate | None = None  # the best frame of the current window
        self.window_start = 0.0

    @property
    def empty(self) -> bool:
        return self.pending is None and not self.picker.pool

    def offer(
        self,
        t: float,
        score: float,
        thumb: Callable[[], np.ndarray],
        image: Any,
        good: bool = True,
        steady: bool = True,
    ) -> None:
        """A frame with motion; `thumb` is called only if it is the best of its window so far.
        In a long event the windows widen to the event's length over the pool's capacity: the
        pool keeps no more spread than that, and each candidate costs a JPEG."""
        window = CANDIDATE_WINDOW
        if self.picker.pool:
            window = max(window, (t - self.picker.pool[0].t) / self.picker.capacity)
        if self.pending is not None and t - self.window_start >= window:
            self.flush()
        if self.pending is None:
            self.window_start = t
        if self.pending is None or score > self.pending.score:
            self.pending = Candidate(t, score, thumb(), image, good, steady)

    def flush(self) -> None:
        """The current window's best frame into the pool (if the picker would keep it)."""
        cand, self.pending = self.pending, None
        if cand is None or not self.picker.would_keep(cand.t, cand.score):
            return
        cand.image = self.images.prepare(cand.image)
        self.picker.add(cand)

    def chosen(self, start: float, end: float) -> list[tuple[float, Any]]:
        """The images of the candidates picked for a clip over [start, end), with their times."""
        self.flush()
        out = []
        for cand in self.picker.pick(start, end):
            image = self.images.image(cand.image)
            if image is not None:
                out.append((cand.t, image))
        return out

    def drop_before(self, t: float) -> None:
        self.picker.drop_before(t)

    def clear(self) -> None:
        self.picker.clear()
        self.pending = None
