"""More generated recordings on top of synth.py, for the detection-quality checks:

- `make_light_scene`: a street scene whose whole picture changes brightness or contrast at a
  known time (lights switched on, auto-exposure jumping), instantly or ramped, and back again
  later; optionally with a person crossing during or right after the change;
- `object_boxes`: where each object of a generated scene is, frame by frame (its bounding box
  and how much of it is inside the picture), to judge whether a keyframe shows it.

Same renderer, ground truth and encoder as synth.py (libx264 through PyAV).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import synth

_VERSION = 1


@dataclass(frozen=True)
class Box:
    x0: float  # 0..1 coordinates of the object's visible part
    y0: float
    x1: float
    y1: float
    inside: float  # fraction of the object's coverage inside the picture
    moving: bool


def _boxes_at(plan: synth.Plan, t: float) -> list[Box]:
    cam, w, h, out = plan.cam, plan.cam.w, plan.cam.h, []
    for tk in plan.tracks:
        s = synth.sprite_at(tk, cam, t, plan.bg.sun_dir, False)
        if s is None:
            continue
        total = float(s.a.sum())
        sl, sub = synth.clip_to_frame(s, w, h)
        if sl is None or total <= 0:
            continue
        a = s.a[sub]
        inside = float(a.sum()) / total
        rows, cols = np.flatnonzero((a > 0.3).any(axis=1)), np.flatnonzero((a > 0.3).any(axis=0))
        if not rows.size:
            continue
        y0, x0 = sl[0].start, sl[1].start
        moving = tk.state(t) != tk.state(t - 1 / plan.fps)
        out.append(
            Box(
                (x0 + cols[0]) / w,
                (y0 + rows[0]) / h,
                (x0 + cols[-1] + 1) / w,
                (y0 + rows[-1] + 1) / h,
                inside,
                moving,
            )
        )
    return out


def object_boxes(
    kind: str,
    width: int,
    height: int,
    *,
    fps: float = 15,
    duration: float | None = None,
    seed: int = 0,
    motion_fraction: float | None = None,
) -> list[list[Box]]:
    """Per frame of a `synth.make_scene` scene made with the same arguments: its objects."""
    dur = float(synth.DURATION[kind] if duration is None else duration)
    mf = (0.15 if motion_fraction is None else motion_fraction) if kind == "busy" else None
    plan = synth.plan_scene(kind, width, height, fps, dur, seed, mf)
    return [_boxes_at(plan, i / fps) for i in range(plan.n)]


@dataclass(frozen=True)
class LightScene:
    path: Path
    width: int
    height: int
    fps: float
    duration: float
    motion: tuple[tuple[float, float], ...]
    changes: tuple[tuple[float, float], ...]  # (start, end) of each light change
    boxes: tuple[tuple[Box, ...], ...]  # per frame

    def mid_change(self, t: float, after: float = 0.5) -> bool:
        """Is `t` within a light change (or `after` s of it settling)?"""
        return any(a - 1e-6 <= t <= b + after for a, b in self.changes)


def make_light_scene(
    out_dir: Path,
    *,
    change: float = 0.35,
    mode: str = "gain",
    ramp: float = 0.0,
    at: float = 8.0,
    back: float | None = 15.0,
    walk: float | None = None,
    width: int = 640,
    height: int = 360,
    fps: float = 15,
    gop: int | None = None,
    duration: float = 22.0,
    seed: int = 0,
    noise: float = 1.0,
    crf: int = 26,
    maxrate: int | None = None,
) -> LightScene:
    """A daylight street whose picture changes by `change` (+0.35: 35 % brighter or more
    contrast, -0.35: 35 % darker or flatter) at `at` s, over `ramp` s (0: from one frame to
    the next), and changes back at `back` s (None: never). `mode` "gain" scales luma (and
    chroma) about black, "contrast" about the scene's mean luma. With `walk` (s, may be
    negative), a person's first visible movement comes that long after `at`; else the scene
    is empty. Ground truth and encoding as synth.py; cached in `out_dir`."""
    if mode not in ("gain", "contrast"):
        raise ValueError(f"mode must be gain or contrast, not {mode!r}")
    if not -0.9 < change < 4:
        raise ValueError(f"change must be within -0.9..4, got {change}")
    gop = gop or round(2 * fps)
    name = (
        f"light_{mode}{change:+g}_r{ramp:g}_at{at:g}_b{back}_w{walk}_{width}x{height}_"
        f"{fps:g}fps_{duration:g}s_g{gop}_crf{crf}"
        + (f"max{maxrate}" if maxrate else "")
        + f"_n{noise:g}_s{seed}_v{_VERSION}.{synth.VERSION}"
    )
    out_dir = Path(out_dir)
    path, meta = out_dir / f"{name}.mp4", out_dir / f"{name}.json"
    plan = synth.plan_scene("walk", width, height, fps, duration, seed, None)
    plan.noise = noise
    plan.tracks = plan.tracks[:1] if walk is not None else []
    if plan.tracks:
        first = next(i for i, (_, m) in enumerate(synth.render_frames(plan, False, None)) if m)
        shift = at + walk - first / fps
        plan.tracks[0].t = [x + shift for x in plan.tracks[0].t]
    changes = [(at, at + ramp)] + ([(back, back + ramp)] if back is not None else [])
    boxes = tuple(tuple(_boxes_at(plan, i / fps)) for i in range(plan.n))
    if not (path.exists() and meta.exists()):
        out_dir.mkdir(parents=True, exist_ok=True)
        flags: list[bool] = []
        factor = 1.0 + change

        def level(t: float) -> float:
            """How far the change has gone at `t`: 0 before, 1 after."""
            u = 0.0
            for a, b in changes[:1]:
                u = 1.0 if t >= b else max(0.0, (t - a) / (b - a)) if t >= a else 0.0
            if back is not None and t >= back:
                u = 0.0 if t >= back + ramp else 1.0 - (t - back) / ramp
            return u

        def frames() -> Iterator[tuple[np.ndarray, bool]]:
            pivot = None
            for i, (buf, moving) in enumerate(synth.render_frames(plan, True, None)):
                flags.append(moving)
                y = buf[:height]
                if pivot is None:
                    pivot = float(y.mean())
                k = factor ** level(i / fps) if mode == "gain" else 1 + change * level(i / fps)
                if k != 1.0:
                    f = y.astype(np.float32)
                    f = f * k if mode == "gain" else pivot + (f - pivot) * k
                    y[...] = np.clip(np.rint(f), 0, 255)
                    c = buf[height:].astype(np.float32)
                    buf[height:] = np.clip(np.rint(128 + (c - 128) * min(k, 1.5)), 0, 255)
                yield buf, moving

        tmp = out_dir / f".{name}.{os.getpid()}.tmp.mp4"
        try:
            synth.encode_frames(
                frames(), tmp, width, height, fps, "libx264", gop, None, crf, 0, maxrate
            )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp_meta = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps({"motion": synth.motion_intervals(flags, fps)}))
        os.replace(tmp_meta, meta)
        os.replace(tmp, path)
    motion = tuple(tuple(m) for m in json.loads(meta.read_text())["motion"])
    return LightScene(
        path,
        width,
        height,
        fps,
        round(plan.n / fps, 6),
        motion,
        tuple(changes),
        boxes,
    )


def shows_object(boxes: list[Box] | tuple[Box, ...], inside: float = 0.6) -> bool:
    """A frame shows an object when one is mostly (`inside`) in the picture."""
    return any(b.inside >= inside and b.x1 > b.x0 and b.y1 > b.y0 for b in boxes)


def frame_index(t: float, fps: float) -> int:
    return max(0, math.floor(t * fps + 0.5))
