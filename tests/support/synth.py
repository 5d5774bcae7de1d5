"""Synthetic surveillance recordings with exactly known motion (ground truth).

Used by the demo, the test suite and the benchmark.  A scene is a small procedural street
view seen by a wall-mounted camera (perspective ground plane, textured facades with windows,
pavers, road markings, lamp post) with articulated people and cars walking/driving on the
ground plane, per-frame sensor noise and the lighting events a real camera sees (light
switch + auto-exposure, day/night IR switch, dusk).  It is encoded the way IP cameras do it:
fixed GOP, no B-frames by default, one slice per frame.

Ground truth is measured on the rendered objects frame by frame, not taken from the plan: a
frame is "motion" when an object's pose changed since the previous frame *and* the object
(body, shadow, fade-in from a doorway) changes at least a handful of unmasked pixels by 4 or
more levels against the empty scene.  Standing still, lighting changes and masked foliage are
not motion.  An interval (start, end) covers frames start*fps .. end*fps - 1: end is the end
of the last moving frame.  Event times (global_changes) are exact frame times.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

log = logging.getLogger(__name__)

KINDS = (
    "static_noise",
    "walk",
    "light_switch",
    "light_switch_motion",
    "ir_switch",
    "dusk",
    "masked_foliage",
    "small_object",
    "long_event",
    "stop_and_go",
    "busy",
)
DURATION = {
    "static_noise": 20,
    "walk": 40,
    "light_switch": 30,
    "light_switch_motion": 25,
    "ir_switch": 30,
    "dusk": 40,
    "masked_foliage": 30,
    "small_object": 30,
    "long_event": 55,
    "stop_and_go": 35,
    "busy": 60,
}
VERSION = 1  # bump when the rendering changes so cached files are regenerated
_F = np.float32


@dataclass(frozen=True)
class Scene:
    kind: str
    path: Path
    width: int
    height: int
    fps: float
    duration: float
    motion: tuple[tuple[float, float], ...]
    mask: tuple[tuple[tuple[float, float], ...], ...] = ()
    global_changes: tuple[float, ...] = ()


# ---------------------------------------------------------------------------- small helpers
def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Smooth (smoothstep-weighted) upsampling: plain bilinear shows the noise grid."""
    gy = np.linspace(0, a.shape[0] - 1.001, h, dtype=_F)
    gx = np.linspace(0, a.shape[1] - 1.001, w, dtype=_F)
    y0, x0 = gy.astype(np.int32), gx.astype(np.int32)
    fy, fx = _smooth(gy - y0)[:, None], _smooth(gx - x0)[None, :]
    a0, a1 = a[y0], a[y0 + 1]
    top = a0[:, x0] * (1 - fx) + a0[:, x0 + 1] * fx
    bot = a1[:, x0] * (1 - fx) + a1[:, x0 + 1] * fx
    return (top * (1 - fy) + bot * fy).astype(_F)


def _fbm(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 4) -> np.ndarray:
    """Multi-scale value noise, ~unit std, biggest blobs about `cell` pixels."""
    out, amp, tot = np.zeros((h, w), _F), 1.0, 0.0
    for _ in range(octaves):
        g = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2)).astype(_F)
        out += amp * _resize(g, h, w)
        tot, amp, cell = tot + amp * amp, amp * 0.55, max(cell / 2, 1.0)
    return out / (0.55 * math.sqrt(tot))


def _blur(a: np.ndarray, passes: int = 1) -> np.ndarray:
    a = a.copy()
    for _ in range(passes):
        a[1:-1] = 0.25 * a[:-2] + 0.5 * a[1:-1] + 0.25 * a[2:]
        a[:, 1:-1] = 0.25 * a[:, :-2] + 0.5 * a[:, 1:-1] + 0.25 * a[:, 2:]
    return a


def _rect(x0: float, y0: float, x1: float, y1: float, w: int, h: int):
    """Anti-aliased coverage of an axis-aligned box: (slices, coverage) or None."""
    ix0, iy0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
    ix1, iy1 = min(math.ceil(x1), w), min(math.ceil(y1), h)
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    xs, ys = np.arange(ix0, ix1, dtype=_F), np.arange(iy0, iy1, dtype=_F)
    cx = np.clip(np.minimum(xs + 1, x1) - np.maximum(xs, x0), 0, 1)
    cy = np.clip(np.minimum(ys + 1, y1) - np.maximum(ys, y0), 0, 1)
    return (slice(iy0, iy1), slice(ix0, ix1)), cy[:, None] * cx[None, :]


def _blend(arr: np.ndarray, sl, cov: np.ndarray, val) -> None:
    arr[sl] += (val - arr[sl]) * cov


def _cap(u, v, ax, ay, bx, by, r):
    """Signed distance to a capsule (segment a-b, radius r)."""
    pax, pay, bax, bay = u - ax, v - ay, bx - ax, by - ay
    t = np.clip((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-9), 0, 1)
    return np.hypot(pax - bax * t, pay - bay * t) - r


def _rbox(u, v, cx, cy, hx, hy, r):
    qx, qy = np.abs(u - cx) - hx + r, np.abs(v - cy) - hy + r
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - r


def _hue(rng: np.random.Generator, sat: float) -> tuple[float, float]:
    a, s = rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 1.0) * sat
    return s * math.cos(a), s * math.sin(a)


# ---------------------------------------------------------------------------- camera / objects
@dataclass
class _Cam:
    """Pinhole camera over a flat ground: horizon row yh, camera height hc metres."""

    w: int
    h: int
    yh: float
    hc: float
    f: float

    def y(self, z: float, up: float = 0.0) -> float:
        return self.yh + self.f * (self.hc - up) / z

    def x(self, x: float, z: float) -> float:
        return self.w / 2 + self.f * x / z

    def halfw(self, z: float) -> float:
        return self.w * z / (2 * self.f)


@dataclass
class _Look:
    kind: str  # "person" | "car"
    size: float  # person height / car length, metres
    lum: dict[str, float]
    ir: dict[str, float]
    uv: dict[str, tuple[float, float]]
    tex: np.ndarray
    stride: float = 1.0


@dataclass
class _Sprite:
    x0: int
    y0: int
    a: np.ndarray  # coverage 0..1
    lum: np.ndarray  # premultiplied albedo
    u: np.ndarray  # premultiplied chroma offsets
    v: np.ndarray
    sh: np.ndarray  # ground shadow strength 0..1
    z: float
    foot: tuple[int, int]
    ir: np.ndarray | None = None


def _trapezoid(u: float, ai: float, ao: float) -> tuple[float, float]:
    """Distance fraction and speed fraction along a segment that accelerates/brakes."""
    vmax = 1.0 / (1.0 - ai / 2 - ao / 2)
    if u < ai:
        return vmax * u * u / (2 * ai), u / ai
    if u > 1 - ao:
        return 1 - vmax * (1 - u) ** 2 / (2 * ao), (1 - u) / ao
    return vmax * (u - ai / 2), 1.0


@dataclass
class _Track:
    """Piecewise-linear path on the ground; repeated waypoints are stops."""

    look: _Look
    t: list[float]
    p: list[tuple[float, float]]  # (X, Z) metres
    emerge: tuple[float, float] | None = None  # fade-in while stepping out of a dark doorway
    phase0: float = 0.0
    wob: tuple[float, float] = (0.0, 0.0)

    def state(self, t: float) -> tuple[float, float, float, float, float, int, float]:
        """X, Z, walked distance, speed fraction, side-on fraction, facing (+-1), visibility."""
        ts, ps, n = self.t, self.p, len(self.t)
        if t <= ts[0]:
            k, u = 0, 0.0
        elif t >= ts[-1]:
            k, u = n - 2, 1.0
        else:
            k = bisect.bisect_right(ts, t) - 1
            u = (t - ts[k]) / (ts[k + 1] - ts[k])
        lens = [math.dist(ps[j], ps[j + 1]) for j in range(n - 1)]

        def stop(j: int) -> bool:
            return 0 <= j < n - 1 and lens[j] == 0

        dur = ts[k + 1] - ts[k]
        s, spd = _trapezoid(
            u,
            min(0.5 / dur, 0.4) if stop(k - 1) else 0.0,
            min(0.5 / dur, 0.4) if stop(k + 1) else 0.0,
        )
        if t <= ts[0] or t >= ts[-1] or lens[k] == 0:
            spd = 0.0
        (ax, az), (bx, bz) = ps[k], ps[k + 1]
        j = k  # a standing person keeps facing the way it walked
        while lens[j] == 0 and j > 0:
            j -= 1
        hx, hz = (
            ((ps[j + 1][0] - ps[j][0]) / lens[j], (ps[j + 1][1] - ps[j][1]) / lens[j])
            if lens[j]
            else (1.0, 0.0)
        )
        dist = sum(lens[:k]) + s * lens[k]
        # Sway depends on distance walked, so a standing person is perfectly still; cars keep
        # to their lane.
        amp = 1.0 if self.look.kind == "person" else 0.0
        wob = amp * (
            0.05 * math.sin(dist / 1.1 + self.wob[0]) + 0.03 * math.sin(dist / 0.37 + self.wob[1])
        )
        x, z = ax + (bx - ax) * s - hz * wob, az + (bz - az) * s + hx * wob
        vis = (
            1.0
            if self.emerge is None
            else min(max((t - self.emerge[0]) / (self.emerge[1] - self.emerge[0]), 0.0), 1.0)
        )
        return x, z, dist, spd, abs(hx), (1 if hx >= 0 else -1), vis


_PARTS = ("shirt", "pants", "skin", "hair", "shoe")


def _person_look(
    rng: np.random.Generator,
    bg: float,
    contrast: tuple[float, float] = (20, 80),
    height: float | None = None,
) -> _Look:
    """Clothes differ from the local background by `contrast` levels (either sign)."""

    def pick() -> float:
        c, s = rng.uniform(*contrast), rng.choice([-1.0, 1.0])
        val = bg + s * c
        return float(np.clip(val if 14 <= val <= 238 else bg - s * c, 14, 238))

    lum = (pick(), pick(), rng.uniform(110, 185), rng.uniform(25, 90), rng.uniform(25, 70))
    # Clothes reflect IR independently of their visible colour; skin is bright in IR.
    ir = (rng.uniform(60, 230), rng.uniform(50, 200), 200.0, rng.uniform(60, 120), 45.0)
    uv = (_hue(rng, 18), _hue(rng, 10), (-6.0, 12.0), (0.0, 3.0), (0.0, 0.0))
    size = height or rng.uniform(1.6, 1.9)
    return _Look(
        "person",
        size,
        dict(zip(_PARTS, lum, strict=True)),
        dict(zip(_PARTS, ir, strict=True)),
        dict(zip(_PARTS, uv, strict=True)),
        _fbm(rng, 64, 32, 6, 3),
        rng.uniform(0.75, 0.9),
    )


_CAR_PARTS = ("body", "glass", "tyre", "rim", "lamp", "tail")


def _car_look(rng: np.random.Generator) -> _Look:
    body = float(rng.choice([225, 180, 130, 70, 35]))  # white, silver, grey, dark, black
    paint = _hue(rng, 20) if rng.random() < 0.4 else (0.0, 0.0)
    lum = (body, rng.uniform(35, 70), 28.0, 135.0, 225.0, 80.0)
    ir = (rng.uniform(60, 210), 35.0, 30.0, 150.0, 200.0, 90.0)
    uv = (paint, (4.0, -2.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (-5.0, 40.0))
    return _Look(
        "car",
        rng.uniform(4.0, 4.8),
        dict(zip(_CAR_PARTS, lum, strict=True)),
        dict(zip(_CAR_PARTS, ir, strict=True)),
        dict(zip(_CAR_PARTS, uv, strict=True)),
        _fbm(rng, 32, 64, 8, 3),
    )


_Part = tuple[np.ndarray, str, bool]  # signed distance, material, on the far side


def _paint(
    parts: list[_Part], look: _Look, w: int, h: int, scale: float, want_ir: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Painter's algorithm over SDF parts -> premultiplied (alpha, lum, u, v, ir)."""
    a, lum, u, v = (np.zeros((h, w), _F) for _ in range(4))
    ir = np.zeros((h, w), _F) if want_ir else None
    for d, key, back in parts:
        c = np.clip(0.5 - d * scale, 0, 1).astype(_F)  # ~1 px soft edge
        m = 0.85 if back else 1.0  # limbs on the far side are in shade
        a += (1 - a) * c
        lum += (look.lum[key] * m - lum) * c
        u += (look.uv[key][0] - u) * c
        v += (look.uv[key][1] - v) * c
        if ir is not None:
            ir += (look.ir[key] * m - ir) * c
    return a, lum, u, v, ir


def _person_parts(
    uu: np.ndarray, vv: np.ndarray, ph: float, spd: float, side: float, face: int
) -> list[_Part]:
    """Walking figure in units of body height, feet at the origin; ph = gait phase."""
    sw = 0.17 * spd * math.sin(ph) * side  # stride seen from the side
    hip = -0.5 + 0.012 * spd * math.cos(2 * ph)
    lat = 0.045 * (1 - side)  # legs/arms apart when walking towards the camera
    knee = 0.03 * spd * side * face
    feet = (
        ((-sw - lat, -0.035 * spd * max(0.0, -math.cos(ph))), True, -1),
        (
            (sw + lat, -0.035 * spd * max(0.0, math.cos(ph))),
            False,
            1,
        ),
    )
    parts: list[_Part] = []
    for (fx, fy), back, sgn in feet:
        kx, hx = (fx + sgn * lat * 0.5) / 2 + knee, sgn * lat * 0.5
        leg = np.minimum(
            _cap(uu, vv, hx, hip, kx, hip / 2, 0.052),
            _cap(uu, vv, kx, hip / 2, fx, fy - 0.03, 0.045),
        )
        parts += [(leg, "pants", back)]
        parts += [
            (_cap(uu, vv, fx, fy - 0.02, fx + 0.05 * face * side, fy - 0.015, 0.022), "shoe", back)
        ]
        if back:  # the far arm, then the torso over it
            sx = 0.1 * (1 - side)
            parts += [(_cap(uu, vv, -sx, -0.78, -1.2 * sx + 0.7 * sw, -0.49, 0.034), "shirt", True)]
            torso = _rbox(uu, vv, 0, hip - 0.17, 0.075 + 0.045 * (1 - side), 0.14, 0.05)
            parts += [(torso, "shirt", False)]
    sx = 0.1 * (1 - side)
    return parts + [
        (_cap(uu, vv, sx, -0.78, 1.2 * sx - 0.7 * sw, -0.49, 0.034), "shirt", False),
        (_cap(uu, vv, 0, -0.8, 0, -0.84, 0.03), "skin", False),
        (np.hypot(uu + 0.012 * face * side, vv + 0.918) - 0.062, "hair", False),
        (np.hypot(uu - 0.02 * face * side, vv + 0.895) - 0.05, "skin", False),
    ]


def _car_parts(cu: np.ndarray, vv: np.ndarray) -> list[_Part]:
    """Side view in metres, front towards +cu, ground at 0."""
    parts: list[_Part] = [
        (_rbox(cu, vv, 0, -0.62, 2.2, 0.33, 0.18), "body", False),
        (_rbox(cu, vv, -0.15, -1.1, 1.25, 0.32, 0.28), "body", False),
        (_rbox(cu, vv, -0.15, -1.08, 1.08, 0.2, 0.15), "glass", False),
        (_rbox(cu, vv, -0.1, -1.08, 0.05, 0.24, 0.0), "body", False),
        (_rbox(cu, vv, 2.12, -0.72, 0.08, 0.07, 0.02), "lamp", False),
        (_rbox(cu, vv, -2.15, -0.72, 0.06, 0.08, 0.02), "tail", False),
    ]
    for wx in (-1.35, 1.35):
        parts += [
            (np.hypot(cu - wx, vv + 0.31) - r, key, False)
            for r, key in ((0.31, "tyre"), (0.16, "rim"))
        ]
    return parts


def sprite_at(tr: _Track, cam: _Cam, t: float, sun: float, want_ir: bool) -> _Sprite | None:
    x, z, dist, spd, side, face, vis = tr.state(t)
    if z <= 0.5 or vis <= 0:
        return None
    lk, px, py = tr.look, cam.x(x, z), cam.y(z)
    m = cam.f / z  # pixels per metre at this depth
    person = lk.kind == "person"
    h = lk.size * m if person else m  # drawing unit: body height / one metre
    hw, top, bot = (0.5 * h, 1.03 * h, 0.08 * h) if person else (2.7 * m, 1.6 * m, 0.3 * m)
    # Even origin and size: the half-resolution chroma of the sprite lines up with luma.
    x0, y0 = math.floor(px - hw) // 2 * 2, math.floor(py - top) // 2 * 2
    cw, ch = (math.ceil(px + hw) - x0 + 1) // 2 * 2, (math.ceil(py + bot) - y0 + 1) // 2 * 2
    if x0 >= cam.w or y0 >= cam.h or x0 + cw <= 0 or y0 + ch <= 0 or h < 3:
        return None
    # Sub-pixel exact: the shapes are evaluated at the true (float) position.
    uu = ((np.arange(cw, dtype=_F) + (x0 + 0.5 - px)) / h)[None, :]
    vv = ((np.arange(ch, dtype=_F) + (y0 + 0.5 - py)) / h)[:, None]
    if person:
        ph = tr.phase0 + 2 * math.pi * dist / (lk.stride * lk.size)
        a, lum, cu, cv, ir = _paint(
            _person_parts(uu, vv, ph, spd, side, face), lk, cw, ch, h / 1.1, want_ir
        )
        sh = _smooth(0.5 - (np.hypot((uu - 0.13 * sun) / 0.3, vv / 0.05) - 1) / 0.6) * 0.55
        ty, tx = (vv + 1.03) * 60, (uu + 0.25) * 64
        grad = np.clip(uu * sun / 0.2, -1, 1)  # lit from the sun's side
    else:
        a, lum, cu, cv, ir = _paint(_car_parts(uu * face, vv), lk, cw, ch, m / 1.1, want_ir)
        sh = _smooth(0.5 - _rbox(uu - 0.2 * sun, vv, 0, 0.0, 2.2, 0.1, 0.1) / 0.15) * 0.45
        ty, tx = (vv + 1.5) * 20, (uu * face + 2.5) * 12
        grad = -np.clip(vv + 0.9, -0.6, 0.6) / 0.6  # bright roof, dark sills
    th, tw = lk.tex.shape
    tex = lk.tex[np.clip(ty.astype(np.int32), 0, th - 1), np.clip(tx.astype(np.int32), 0, tw - 1)]
    shade = (1 + 0.07 * tex + 0.12 * grad).astype(_F)
    lum *= shade
    if ir is not None:
        ir *= shade
    if vis < 1:
        a, lum, cu, cv, sh = a * vis, lum * vis, cu * vis, cv * vis, sh * vis
        ir = None if ir is None else ir * vis
    foot = (min(max(int(py), 0), cam.h - 1), min(max(int(px), 0), cam.w - 1))
    return _Sprite(x0, y0, a, lum, cu, cv, sh.astype(_F), z, foot, ir)


# ---------------------------------------------------------------------------- background
@dataclass
class _Bg:
    alb: np.ndarray
    irf: np.ndarray
    emis: np.ndarray
    sky: np.ndarray
    zmap: np.ndarray
    u: np.ndarray
    v: np.ndarray
    sun: np.ndarray
    pool: np.ndarray
    lamp_head: np.ndarray
    occ: list = field(default_factory=list)  # (z, slices, coverage): things objects pass behind
    doors: list = field(default_factory=list)
    sun_dir: float = 1.0
    zn: float = 8.0
    zb: float = 17.0
    post: tuple[float, float] = (0.0, 8.0)


def _background(cam: _Cam, far: bool, lr: np.random.Generator, tr: np.random.Generator) -> _Bg:
    w, h = cam.w, cam.h
    ys = np.arange(h, dtype=_F)[:, None] + 0.5
    fine, coarse = _fbm(tr, h, w, 1.6, 2), _fbm(tr, h, w, h / 6)
    zb, zn = (80.0, 9.0) if far else (17.0, 8.0)
    sky_y = ys / h
    alb = (
        np.broadcast_to(185 + 30 * np.clip(sky_y / (cam.yh / h), 0, 1), (h, w))
        + 9 * _fbm(tr, h, w, h / 3)
    ).astype(_F)
    irf, sky = np.full((h, w), 0.1, _F), np.ones((h, w), _F)
    u, v = np.full((h, w), 10.0, _F), np.full((h, w), -5.0, _F)
    zmap, emis = np.full((h, w), 1000.0, _F), np.zeros((h, w), _F)
    # Ground: depth and lateral position per pixel; bands of constant depth are rows.
    gy0 = int(cam.yh) + 1
    z = (cam.f * cam.hc / (ys[gy0:] - cam.yh)).astype(_F)
    xg = ((np.arange(w, dtype=_F)[None, :] + 0.5 - w / 2) * z / cam.f).astype(_F)
    mpp_y, mpp_x = z * z / (cam.f * cam.hc), z / cam.f  # metres per pixel

    def line(dist_m: np.ndarray, width: float, mpp) -> np.ndarray:
        wpx, dpx = width / mpp, np.abs(dist_m) / mpp
        return np.clip(wpx / 2 + 0.5 - dpx, 0, np.minimum(wpx, 1))

    def hashed(ix: np.ndarray, iz: np.ndarray) -> np.ndarray:
        return (((ix * 73856093) ^ (iz * 19349663)) % 997 / 997.0 - 0.5).astype(_F)

    fn, co = fine[gy0:], coarse[gy0:]
    g = np.broadcast_to(np.where(z > zb, 80, 150), xg.shape).astype(_F) + 7 * fn
    gi, gu, gv = np.full(xg.shape, 1.0, _F), np.zeros(xg.shape, _F), np.zeros(xg.shape, _F)
    bands = (
        [(0, zb - 4, "lot"), (zb - 4, zb, "walk")]
        if far
        else [
            (0, zn - 1.2, "pavers"),
            (zn - 1.2, zn - 0.2, "grass"),
            (zn - 0.2, zn, "curb"),
            (zn, zb - 2.6, "road"),
            (zb - 2.6, zb - 2.4, "curb"),
            (zb - 2.4, zb, "walk"),
        ]
    )
    bands.append((zb, 1e9, "grass"))
    pav = 0.45
    for z0, z1, mat in bands:
        m = ((z >= z0) & (z < z1)).astype(_F)
        if mat == "pavers":
            val = (
                146
                + 14
                * hashed(np.floor(xg / pav).astype(np.int64), np.floor(z / pav).astype(np.int64))
                + 6 * co
                + 4 * fn
            )
            j = np.maximum(
                line(xg - np.round(xg / pav) * pav, 0.012, mpp_x),
                line(z - np.round(z / pav) * pav, 0.012, mpp_y),
            )
            val, ir_, cu, cv = val - 45 * j, 1.0, -2.0, 2.0
        elif mat == "grass":
            val, ir_, cu, cv = 88 + 16 * fn + 10 * co, 2.0, -10.0, -8.0
        elif mat == "curb":
            val, ir_, cu, cv = 185 + 5 * fn, 1.1, 0.0, 0.0
        elif mat == "walk":
            val = 150 + 6 * fn + 5 * co - 40 * line(xg - np.round(xg / 1.5) * 1.5, 0.015, mpp_x)
            ir_, cu, cv = 1.0, 1.0, 2.0
        else:  # asphalt
            val, ir_, cu, cv = 84 + 6 * fn + (8 if mat == "road" else 4) * co, 0.9, 1.0, -1.0
            if mat == "road":
                zc = (zn + zb - 2.6) / 2
                dash = (np.mod(xg + lr.uniform(0, 9), 9.0) < 3.0).astype(_F)
                mark = np.maximum(
                    line(z - zc, 0.12, mpp_y) * dash,
                    np.maximum(line(z - zn - 0.35, 0.1, mpp_y), line(z - zb + 2.9, 0.1, mpp_y)),
                )
            else:
                mark = np.zeros_like(val)
                for za in (14.0, 30.0, 50.0):  # parking rows, parallel stalls 5.5 m
                    inside = ((z > za) & (z < za + 4)).astype(_F)
                    mark = np.maximum(
                        mark, np.maximum(line(z - za, 0.1, mpp_y), line(z - za - 4, 0.1, mpp_y))
                    )
                    mark = np.maximum(
                        mark, inside * line(xg - np.round(xg / 5.5) * 5.5, 0.1, mpp_x)
                    )
            val = val + (200 - val) * mark
        g += (val - g) * m
        gi += (ir_ - gi) * m
        gu += (cu - gu) * m
        gv += (cv - gv) * m
    alb[gy0:], irf[gy0:], u[gy0:], v[gy0:] = g, gi, gu, gv
    sky[gy0:], zmap[gy0:] = 0, z
    # Sunlight: a soft-edged shadow of the camera's own building across the near ground.
    sun_dir = float(lr.choice([-1.0, 1.0]))
    edge = (xg - (lr.uniform(-1.5, 1.5) + sun_dir * lr.uniform(0.2, 0.6) * z)) * sun_dir
    sun = np.ones((h, w), _F)
    sun[gy0:] = 1 - 0.42 * _smooth(edge / mpp_x / 3 + 0.5) * (z < (zb - 3 if far else zn - 0.2))
    # Distant tree line between buildings (vegetation is bright in IR, sky is dark).
    ridge = cam.yh - h * (0.03 + 0.025 * _fbm(tr, 1, w, w / 8)[0] + 0.008 * fine[0])
    m = (ys > ridge[None, :]) & (ys < cam.yh + 1.0)
    alb[m] = (72 + 14 * fine + 6 * coarse)[m]
    irf[m], u[m], v[m], sky[m], zmap[m] = 2.2, -7.0, -5.0, 0.0, 300.0
    # Facades along X at depth zb, with windows and a door people may come out of.
    ppm, doors = cam.f / zb, []
    xcur = -cam.halfw(zb) - lr.uniform(0, 6)
    while xcur < cam.halfw(zb) + 2:
        bw = lr.uniform(14, 40) if far else lr.uniform(6, 14)
        bh = lr.uniform(7, 22) if far else lr.uniform(3.8, 11)
        lumf, siding = lr.uniform(105, 190), lr.random() < 0.4
        r = _rect(cam.x(xcur, zb), cam.y(zb, bh), cam.x(xcur + bw, zb), cam.y(zb, 0) + 1, w, h)
        if r is not None:
            sl, cov = r
            face = lumf + 6 * fine[sl] + 5 * coarse[sl]
            if siding:
                face = face - 12 * (np.mod((cam.y(zb) - ys[sl[0]]) / ppm, 0.22) < 0.04)
            _blend(alb, sl, cov, face)
            _blend(irf, sl, cov, lr.uniform(0.8, 1.4))
            # Facade paint is warm (beige, brick) or neutral grey, never saturated.
            _blend(u, sl, cov, lr.uniform(-7, 0))
            _blend(v, sl, cov, lr.uniform(0, 6))
            _blend(sky, sl, cov, 0.0)
            zmap[sl][cov > 0.5] = zb
            for dy, val in ((0.0, min(lumf + 35, 235)), (0.3, lumf * 0.65)):
                rr = _rect(
                    cam.x(xcur - 0.15, zb),
                    cam.y(zb, bh - dy),
                    cam.x(xcur + bw + 0.15, zb),
                    cam.y(zb, bh - dy - 0.3 + dy * 0.6),
                    w,
                    h,
                )
                if rr is not None:
                    _blend(alb, rr[0], rr[1], val)
            door = xcur + lr.uniform(1.5, bw - 2.5) if (not far and bw > 5) else None
            if door is not None and abs(door) < cam.halfw(zb) * 0.8:
                for x0_, x1_, top_, val in (
                    (door - 0.12, door + 1.22, 2.35, lumf * 0.7),
                    (door, door + 1.1, 2.2, 30.0),
                ):
                    rr = _rect(cam.x(x0_, zb), cam.y(zb, top_), cam.x(x1_, zb), cam.y(zb, 0), w, h)
                    if rr is not None:
                        _blend(alb, rr[0], rr[1], val + 6 * fine[rr[0]])
                        _blend(irf, rr[0], rr[1], 0.6)
                doors.append((door + 0.55, zb - 0.3))
            else:
                door = None
            sp = lr.uniform(2.6, 3.6)
            for fl in np.arange(0.9, bh - 1.9, 3.0):
                for wx in np.arange(xcur + 1.0, xcur + bw - 2.0, sp):
                    if door is not None and fl < 2 and abs(wx + 0.6 - door - 0.55) < 1.5:
                        continue
                    # Draw before any early exit: the layout must not depend on resolution.
                    g0, g1, lit = lr.uniform(40, 75), lr.uniform(0, 70), lr.uniform(100, 190)
                    lit *= lr.random() < 0.35  # lit at night
                    rf = _rect(
                        cam.x(wx, zb), cam.y(zb, fl + 1.5), cam.x(wx + 1.2, zb), cam.y(zb, fl), w, h
                    )
                    rg = _rect(
                        cam.x(wx + 0.08, zb),
                        cam.y(zb, fl + 1.42),
                        cam.x(wx + 1.12, zb),
                        cam.y(zb, fl + 0.08),
                        w,
                        h,
                    )
                    if rf is None or rg is None:
                        continue
                    _blend(alb, rf[0], rf[1], min(lumf + 40, 230))
                    refl = g0 + g1 * np.clip(
                        (cam.y(zb, fl + 1.5) - ys[rg[0][0]]) / (1.4 * ppm) + 1, 0, 1
                    )
                    _blend(alb, rg[0], rg[1], refl + 4 * fine[rg[0]])
                    _blend(irf, rg[0], rg[1], 0.3)
                    emis[rg[0]] += (lit - emis[rg[0]]) * rg[1]
                    rm = _rect(
                        cam.x(wx + 0.57, zb),
                        cam.y(zb, fl + 1.42),
                        cam.x(wx + 0.63, zb),
                        cam.y(zb, fl + 0.08),
                        w,
                        h,
                    )
                    if rm is not None:
                        _blend(alb, rm[0], rm[1], min(lumf + 40, 230))
        xcur += bw + (lr.uniform(0, 4) if lr.random() < 0.4 else 0)
    # Low bushes against the facades.
    for _ in range(lr.integers(2, 4)):
        bx, bz = lr.uniform(-1, 1) * cam.halfw(zb), zb - lr.uniform(0.4, 1.5)
        rx, ry = lr.uniform(0.7, 1.6) * cam.f / bz, lr.uniform(0.4, 0.7) * cam.f / bz
        cx_, cy_ = cam.x(bx, bz), cam.y(bz) - ry * 0.9
        r = _rect(cx_ - rx * 1.3, cy_ - ry * 1.3, cx_ + rx * 1.3, cy_ + ry * 1.3, w, h)
        if r is None:
            continue
        sl = r[0]
        xx = np.arange(sl[1].start, sl[1].stop, dtype=_F)[None, :]
        d = (
            np.hypot((xx - cx_) / rx, (ys[sl[0]] - cy_) / ry)
            - 1
            + 0.25 * coarse[sl]
            + 0.1 * fine[sl]
        )
        cov = np.clip(0.5 - d * ry / 1.5, 0, 1) * (ys[sl[0]] < cam.y(bz) + 1)
        _blend(alb, sl, cov, 68 + 18 * fine[sl] + 10 * coarse[sl])
        _blend(irf, sl, cov, 2.2)
        _blend(u, sl, cov, -10.0)
        _blend(v, sl, cov, -7.0)
    bg = _Bg(
        alb,
        irf,
        emis,
        sky,
        zmap,
        u,
        v,
        sun,
        np.zeros((h, w), _F),
        np.zeros((h, w), _F),
        doors=doors,
        sun_dir=sun_dir,
        zn=zn,
        zb=zb,
    )
    # Parked cars are rendered with the same model as moving ones, baked into the background.
    spots = (
        [
            (za + 2.0, lr.uniform(-1, 1) * cam.halfw(za))
            for za in (14.0, 30.0, 50.0)
            for _ in range(3)
        ]
        if far
        else [(zb - 3.6, lr.uniform(-0.8, 0.8) * cam.halfw(zb))]
    )
    for i, (pz, px) in enumerate(spots):  # keep doorways clear: people walk out of them
        for _ in range(20):
            if not any(abs(px - dx) < 3.5 for dx, _ in doors):
                break
            px = lr.uniform(-0.8, 0.8) * cam.halfw(pz)
        spots[i] = (pz, px)
    for pz, px in spots:
        s = sprite_at(
            _Track(_car_look(lr), [0.0, 1.0], [(px, pz), (px, pz)]), cam, 0.0, sun_dir, True
        )
        if s is not None:
            _stamp(bg, s, w, h)
    # Lamp posts: grey by day, lit at night; objects farther away pass behind them.
    posts = (
        [(lr.uniform(-0.7, 0.7) * cam.halfw(zn), zn - 0.6)]
        if not far
        else [(lr.uniform(-0.9, 0.9) * cam.halfw(pz), pz) for pz in (19.0, 24.0, 42.0)]
    )
    for i, (px, pz) in enumerate(posts):
        arm = -1.0 if px > 0 else 1.0
        ph_ = 4.3 if not far else 8.0
        pieces = [
            (px - 0.07, ph_, px + 0.07, 0.0, 75.0),
            (px, ph_, px + arm * 0.9, ph_ - 0.1, 85.0),
            (px + arm * 0.6, ph_ + 0.05, px + arm * 1.2, ph_ - 0.15, 120.0),
        ]
        for k, (x0_, top_, x1_, bot_, val) in enumerate(pieces):
            r = _rect(
                cam.x(min(x0_, x1_), pz),
                cam.y(pz, top_),
                cam.x(max(x0_, x1_), pz),
                cam.y(pz, bot_),
                w,
                h,
            )
            if r is None:
                continue
            _blend(alb, r[0], r[1], val)
            _blend(irf, r[0], r[1], 1.0)
            _blend(sky, r[0], r[1], 0.0)
            bg.zmap[r[0]][r[1] > 0.5] = pz
            bg.occ.append((pz, r[0], r[1]))
            if k == 2 and i == 0:
                bg.lamp_head[r[0]] = np.maximum(bg.lamp_head[r[0]], r[1])
        if i == 0:
            bg.post = (px + arm * 0.9, pz)
            bg.pool[gy0:] = 1.3 * np.exp(-((xg - px - arm * 0.9) ** 2 + (z - pz) ** 2) / 18.0)
    bg.alb, bg.emis = _blur(alb), _blur(emis)
    return bg


def _stamp(bg: _Bg, s: _Sprite, w: int, h: int) -> None:
    sl, sub = clip_to_frame(s, w, h)
    if sl is None:
        return
    a = s.a[sub]
    bg.alb[sl] = bg.alb[sl] * (1 - s.sh[sub] * 0.5) * (1 - a) + s.lum[sub]
    bg.irf[sl] += (1.0 - bg.irf[sl]) * a
    bg.u[sl] = bg.u[sl] * (1 - a) + s.u[sub]
    bg.v[sl] = bg.v[sl] * (1 - a) + s.v[sub]
    bg.sky[sl] *= 1 - a


def clip_to_frame(s: _Sprite, w: int, h: int):
    ch, cw = s.a.shape
    y0, x0, y1, x1 = max(s.y0, 0), max(s.x0, 0), min(s.y0 + ch, h), min(s.x0 + cw, w)
    if y1 <= y0 or x1 <= x0:
        return None, None
    return (slice(y0, y1), slice(x0, x1)), (
        slice(y0 - s.y0, y1 - s.y0),
        slice(x0 - s.x0, x1 - s.x0),
    )


# ---------------------------------------------------------------------------- foliage / mask
def _clip_poly(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sutherland-Hodgman against the unit square, so masks stay in 0..1 coordinates."""
    for axis, lim, keep_lo in ((0, 0.0, True), (0, 1.0, False), (1, 0.0, True), (1, 1.0, False)):

        def inside(
            p: tuple[float, float], axis: int = axis, lim: float = lim, keep_lo: bool = keep_lo
        ) -> bool:
            return p[axis] >= lim if keep_lo else p[axis] <= lim

        res: list[tuple[float, float]] = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            if inside(cur) != inside(prev):
                k = (lim - prev[axis]) / (cur[axis] - prev[axis])
                res.append((prev[0] + k * (cur[0] - prev[0]), prev[1] + k * (cur[1] - prev[1])))
            if inside(cur):
                res.append(cur)
        pts = res
    return pts


def poly_raster(polys, w: int, h: int) -> np.ndarray:
    """Even-odd rule at pixel centres, same convention a detector would use."""
    xs = (np.arange(w, dtype=np.float64)[None, :] + 0.5) / w
    ys = (np.arange(h, dtype=np.float64)[:, None] + 0.5) / h
    out = np.zeros((h, w), bool)
    for poly in polys:
        inside = np.zeros((h, w), bool)
        for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1], strict=True):
            if y1 == y2:
                continue
            cross = ((y1 > ys) != (y2 > ys)) & (xs < x1 + (ys - y1) * (x2 - x1) / (y2 - y1))
            inside ^= cross
        out |= inside
    return out


class _Foliage:
    """Tree crown: leaf texture displaced by wind (sway + flutter) with flickering highlights."""

    def __init__(
        self,
        rng: np.random.Generator,
        tex_rng: np.random.Generator,
        cam: _Cam,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        sun_dir: float,
    ) -> None:
        s = cam.h / 360
        self.amp, self.flut, self.s = 5.0 * s, 1.6 * s, s
        pad = self.amp + self.flut + 4 * s
        k = 1 / math.cos(math.pi / 16)  # circumscribe the padded ellipse
        poly = [
            (
                (cx + (rx + pad) * k * math.cos(a)) / cam.w,
                (cy + (ry + pad) * k * math.sin(a)) / cam.h,
            )
            for a in np.linspace(0, 2 * math.pi, 16, endpoint=False)
        ]
        self.poly = tuple((round(x, 4), round(y, 4)) for x, y in _clip_poly(poly))
        # Even-aligned region so the half-resolution chroma lines up with luma.
        x0, x1 = (
            max(0, math.floor(cx - rx - pad) // 2 * 2),
            min(cam.w, math.ceil(cx + rx + pad + 1) // 2 * 2),
        )
        y0, y1 = (
            max(0, math.floor(cy - ry - pad) // 2 * 2),
            min(cam.h, math.ceil(cy + ry + pad + 1) // 2 * 2),
        )
        self.sl = (slice(y0, y1), slice(x0, x1))
        hh, ww = y1 - y0, x1 - x0
        yy = np.arange(y0, y1, dtype=_F)[:, None] + 0.5
        xx = np.arange(x0, x1, dtype=_F)[None, :] + 0.5
        r = np.hypot((xx - cx) / rx, (yy - cy) / ry)
        lobes = _fbm(tex_rng, hh, ww, min(rx, ry) / 2, 3)
        clumps, leaves = _fbm(tex_rng, hh, ww, 12 * s, 2), _fbm(tex_rng, hh, ww, 2.5 * s, 2)
        shape = _smooth((1 - r + 0.15 * lobes) * 6) * _smooth((1 - r) * 25)  # never beyond r=1
        alpha = shape * _smooth((clumps + 0.5 * leaves + 1.0) * 2.0)
        lit = np.clip(0.85 + 0.3 * ((cy - yy) / ry + sun_dir * (xx - cx) / rx) / 2, 0.55, 1.2)
        speck = _fbm(tex_rng, hh, ww, 1.2 * s, 1)  # single leaves
        lum = (62 + 26 * clumps + 12 * leaves + 8 * speck + 8 * lobes) * lit
        self.tex = np.stack([alpha, lum], axis=-1).astype(_F)  # sampled together
        # Leaf clusters flicker independently: irregular cells of ~6 px (at 360p), each with
        # its own phase (a smooth phase field would show as moving contour bands).
        c, jit = 6 * s, 0.6 * _fbm(tex_rng, hh, ww, 18 * s, 2)
        ky = np.floor((yy - y0) / c + jit).astype(np.int64)
        kx = np.floor((xx - x0) / c - jit).astype(np.int64)
        self.ph = ((ky * 73856093) ^ (kx * 19349663)) % 1000 * 0.00628 + rng.uniform(0, 6.3)
        self.ph = self.ph.astype(_F)
        self.wy = np.clip((cy + ry - yy) / (2 * ry), 0, 1).astype(_F)  # treetop sways most
        self.iy = np.arange(hh, dtype=_F)[:, None]
        self.ix = np.arange(ww, dtype=_F)[None, :]
        self.wp = rng.uniform(0, 6.3, 5)

    def render(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        p, tau = self.wp, 2 * math.pi * t
        gust = (
            self.amp
            * (
                0.55 * math.sin(0.27 * tau + p[0])
                + 0.3 * math.sin(0.71 * tau + p[1])
                + 0.15 * math.sin(1.6 * tau + p[2])
            )
            * (0.65 + 0.35 * math.sin(0.06 * tau + p[3]))
        )
        ix, iy, sc = self.ix, self.iy, 1 / self.s
        dx = gust * self.wy + self.flut * np.sin(ix * 0.21 * sc + iy * 0.13 * sc + 1.9 * tau)
        dy = 0.25 * gust * self.wy + self.flut * np.cos(ix * 0.17 * sc - iy * 0.23 * sc + 2.3 * tau)
        # Bilinear: nearest-pixel sampling of a smoothly displaced texture shows seams.
        fx, fy = ix - dx, iy - dy
        x0, y0 = np.floor(fx), np.floor(fy)
        wx, wy = (fx - x0)[..., None], (fy - y0)[..., None]
        th, tw = self.tex.shape[:2]
        x0 = np.clip(x0, 0, tw - 2).astype(np.intp)
        y0 = np.clip(y0, 0, th - 2).astype(np.intp)
        tx = self.tex
        top = tx[y0, x0] * (1 - wx) + tx[y0, x0 + 1] * wx
        bot = tx[y0 + 1, x0] * (1 - wx) + tx[y0 + 1, x0 + 1] * wx
        v = top * (1 - wy) + bot * wy
        lum = v[..., 1] * (1 + 0.2 * np.sin(self.ph[y0, x0] + 2.1 * tau + p[4]))
        return v[..., 0], lum


# ---------------------------------------------------------------------------- lighting
@dataclass
class _Phase:
    base: np.ndarray  # radiance of the static scene
    light: np.ndarray  # illumination an object standing there receives
    nshape: np.ndarray  # relative sensor noise (dark areas are noisier after gamma)
    u: np.ndarray | None  # half-res chroma offsets; None = monochrome (IR)
    v: np.ndarray | None
    ir: bool = False
    shadow: float = 1.0


@dataclass
class _Light:
    a: str
    gain: float  # auto-exposure gain applied to everything
    sigma: float  # sensor noise, luma levels
    sat: float = 1.0
    b: str | None = None  # cross-fade to phase b with weight w (lamp warming up)
    w: float = 0.0


def _tone_ir(x: np.ndarray) -> np.ndarray:
    return 255 * (np.maximum(x, 0) / 255) ** 0.8


def _phases(bg: _Bg, cam: _Cam, names: set[str], step: float = 1.7) -> dict[str, _Phase]:
    h, w = cam.h, cam.w
    yy = (np.arange(h, dtype=_F)[:, None] + 0.5 - h / 2) / (h / 2)
    xx = (np.arange(w, dtype=_F)[None, :] + 0.5 - w / 2) / (w / 2)
    r2 = (xx * xx * (w / h) ** 2 + yy * yy) / (1 + (w / h) ** 2)
    vign = (1 - 0.22 * r2).astype(_F)  # lens shading
    u2 = bg.u.reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    v2 = bg.v.reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    ground = 1 - bg.sky
    night = vign * (0.33 * ground + 0.12 * bg.sky)
    out: dict[str, _Phase] = {}
    for n in names:
        if n == "day":
            light = vign * (bg.sky + ground * bg.sun)
            base, sh = bg.alb * light, 1.0
        elif n == "eve":
            light = vign * (0.45 * ground + 0.4 * bg.sky + 0.4 * bg.pool * ground)
            base, sh = bg.alb * light + 0.4 * bg.emis * vign + 200 * bg.lamp_head, 0.25
        elif n == "night":
            light, sh = night, 0.2
            base = bg.alb * light + bg.emis
        elif n == "lamp":  # the street lamp switched on, plus the rest of the lights on its circuit
            light, sh = night * step + vign * bg.pool * ground, 0.5
            base = bg.alb * light + bg.emis + 245 * bg.lamp_head
        else:  # IR illuminator next to the lens: falls off with distance, materials differ
            light = np.clip((4.5 / bg.zmap) ** 1.5, 0, 1.05) * (1 - 0.35 * r2) + 0.05
            light = (light * (1 - 0.9 * bg.sky)).astype(_F)
            base = _blur(_tone_ir(bg.alb * bg.irf * light), 2)
            out[n] = _Phase(
                base.astype(_F),
                light,
                np.clip(1.35 - 0.7 * base / 255, 0.65, 1.35),
                None,
                None,
                True,
                0.5,
            )
            continue
        base = base.astype(_F)
        out[n] = _Phase(
            base,
            light.astype(_F),
            np.clip(1.35 - 0.7 * base / 255, 0.65, 1.35),
            u2.astype(_F),
            v2.astype(_F),
            False,
            sh,
        )
    return out


def _switch_light(t_on: float, t_off: float | None, step: float) -> Callable[[float], _Light]:
    g_inf = step**-0.6  # auto-exposure only partly compensates a brighter scene

    def gain_after(t: float, t0: float, g0: float, g1: float) -> float:
        # AE reacts after a few frames and converges in finite time (it stops adjusting)
        return g0 + (g1 - g0) * float(_smooth(np.float64((t - t0 - 0.2) / 1.4)))

    def light(t: float) -> _Light:
        if t < t_on:
            return _Light("night", 1.0, 5.5, 0.55)
        g = gain_after(t, t_on, 1.0, g_inf)
        w = min(max((t - t_on) / 0.13 + 0.35, 0.0), 1.0)  # LED driver / rolling shutter ramp
        if t_off is not None and t >= t_off:
            g_off = gain_after(t_off, t_on, 1.0, g_inf)
            g = gain_after(t, t_off, g_off, 1.0)
            w = min(max(0.5 - (t - t_off) / 0.1, 0.0), 1.0)
        return _Light("night", g, 5.5 * math.sqrt(g), 0.55, "lamp", w)

    return light


def _ir_light(t_sw: float, fps: float) -> Callable[[float], _Light]:
    def light(t: float) -> _Light:
        if t < t_sw:
            return _Light("eve", 1.0, 5.0, 0.6)
        i = round((t - t_sw) * fps)  # IR LEDs on before AE catches up: over-exposed frames
        settle = 1 + 0.12 * (1 - float(_smooth(np.float64((t - t_sw) / 1.5))))
        g = 1.9 if i == 0 else 1.4 if i == 1 else settle
        return _Light("ir", g, 6.5, 0.0)

    return light


# ---------------------------------------------------------------------------- scene plans
@dataclass
class Plan:
    cam: _Cam
    bg: _Bg
    phases: dict[str, _Phase]
    light: Callable[[float], _Light]
    tracks: list[_Track]
    n: int
    fps: float
    nrng: np.random.Generator
    foliage: _Foliage | None = None
    changes: tuple[float, ...] = ()
    noise: float = 1.0  # scales the sensor noise (make_scene's `noise`)


def _day(t: float) -> _Light:
    return _Light("day", 1.0, 3.5)


def plan_scene(
    kind: str, w: int, h: int, fps: float, dur: float, seed: int, mf: float | None
) -> Plan:
    kidx = KINDS.index(kind)
    lr, tr, nr = (np.random.default_rng([seed, kidx, i]) for i in range(3))
    far = kind == "small_object"
    cam = _Cam(w, h, (0.18 if far else 0.30) * h, 9.0 if far else 2.4, 0.89 * h)
    bg = _background(cam, far, lr, tr)
    zn, step = bg.zn, 1.7
    light: Callable[[float], _Light] = _day
    names, tracks, changes, fol = {"day"}, [], (), None
    two_pi = 2 * math.pi

    def q(t: float) -> float:  # snap event times to frame times so they are exact
        return math.ceil(t * fps) / fps

    def ref(z: float, size: float = 1.75) -> float:
        """Mean albedo behind a person walking across at depth z (for picking contrast)."""
        y1 = int(np.clip(cam.y(z), 1, h))
        y0 = int(np.clip(cam.y(z) - size * cam.f / z, 0, y1 - 1))
        return float(bg.alb[y0:y1].mean())

    def cross(
        t_edge: float,
        car: bool,
        z0: float,
        z1: float,
        *,
        speed: float | None = None,
        dur_vis: float | None = None,
        d: int | None = None,
        contrast: tuple[float, float] = (20, 80),
        size: float | None = None,
    ) -> _Track:
        """Object crossing the frame; its body reaches the frame edge at t_edge."""
        d = d or int(lr.choice([-1, 1]))
        look = _car_look(lr) if car else _person_look(lr, ref((z0 + z1) / 2), contrast, size)
        vis_half, margin = (2.3, 2.8) if car else (0.25, 0.55 * look.size)
        if speed is None:
            span = cam.halfw(z0) + cam.halfw(z1) + 2 * vis_half
            speed = span / dur_vis if dur_vis else lr.uniform(1.15, 1.7)
        xa, xb = -d * (cam.halfw(z0) + margin), d * (cam.halfw(z1) + margin)
        t0 = t_edge - (margin - vis_half) / speed
        return _Track(
            look,
            [t0, t0 + math.dist((xa, z0), (xb, z1)) / speed],
            [(xa, z0), (xb, z1)],
            phase0=lr.uniform(0, two_pi),
            wob=(lr.uniform(0, two_pi), lr.uniform(0, two_pi)),
        )

    def walker(t_edge: float, zr: tuple[float, float] = (3.6, 7.0), **kw) -> _Track:
        z0 = lr.uniform(*zr)
        return cross(t_edge, False, z0, float(np.clip(z0 + lr.uniform(-1.2, 1.2), *zr)), **kw)

    def walkers(t: float, gap: float, nmax: int) -> list[_Track]:
        out: list[_Track] = []
        while len(out) < nmax:
            tk = walker(t)
            if out and tk.t[-1] > dur - 0.5:
                break
            out.append(tk)
            t = tk.t[-1] + gap + lr.uniform(0.2, 1.5)
        return out

    if kind == "walk":
        tracks = walkers(lr.uniform(1.5, 3.0), 12.0, 3)
    elif kind in ("light_switch", "light_switch_motion"):
        step = lr.uniform(1.5, 1.9)
        names = {"night", "lamp"}
        if kind == "light_switch":
            t_on = q(lr.uniform(0.3, 0.4) * dur)
            t_off = q(lr.uniform(0.68, 0.8) * dur) if lr.random() < 0.7 else None
        else:
            t_on, t_off = q(lr.uniform(0.25, 0.35) * dur), None
            _, pz = bg.post  # walk through the freshly lit pool in front of the lamp post
            tracks = [walker(t_on + 1.0, (pz - 1.6, pz - 0.5))]
        light = _switch_light(t_on, t_off, step)
        changes = (t_on,) if t_off is None else (t_on, t_off)
        if tracks:
            # Whether the shadow or a swinging arm shows first depends on the direction and
            # the light: measure when the walk becomes visible and move it to 1 s after.
            probe = Plan(
                cam,
                bg,
                _phases(bg, cam, names, step),
                light,
                tracks,
                round((t_on + 4) * fps),
                fps,
                nr,
            )
            first = next(
                (i for i, (_, m) in enumerate(render_frames(probe, False, None)) if m), None
            )
            if first is not None:
                tracks[0].t = [x + t_on + 1.0 - first / fps for x in tracks[0].t]
    elif kind == "ir_switch":
        t_sw = q(lr.uniform(0.3, 0.4) * dur)
        names, light, changes = {"eve", "ir"}, _ir_light(t_sw, fps), (t_sw,)
        tracks = [walker(t_sw + lr.uniform(4.5, 6.0), (3.8, 6.0))]
    elif kind == "dusk":

        def light(t: float) -> _Light:
            g = 0.2 ** (t / dur)  # smooth multiplicative fall-off, AGC adds noise as it darkens
            return _Light("day", g, 3.5 / math.sqrt(g), math.sqrt(g))

        tracks = [walker(lr.uniform(0.6, 0.7) * dur)]
    elif kind == "masked_foliage":
        side = float(lr.choice([0.2, 0.8]))
        tx, tz = (side - 0.5) * 2 * cam.halfw(zn - 0.7), zn - 0.7
        fol = _Foliage(lr, tr, cam, side * w, 0.2 * h, 0.2 * w, 0.3 * h, bg.sun_dir)
        r = _rect(cam.x(tx - 0.18, tz), 0.4 * h, cam.x(tx + 0.18, tz), cam.y(tz), w, h)
        if r is not None:
            _blend(bg.alb, r[0], r[1], 62 + 10 * _fbm(tr, h, w, 2.0, 2)[r[0]])
            _blend(bg.irf, r[0], r[1], 1.5)
            bg.sky[r[0]] *= 1 - r[1]
            bg.occ.append((tz, r[0], r[1]))
        tracks = walkers(lr.uniform(1.5, 3.0), 6.0, 2)
    elif kind == "small_object":
        size = lr.uniform(1.65, 1.85)
        z = size * cam.f / (h / 15)  # about 48 px tall at 720p
        tracks = [
            walker(
                lr.uniform(3.0, 5.0),
                (z, z),
                speed=lr.uniform(2.2, 2.8),
                contrast=(30, 50),
                size=size,
            )
        ]
        tracks[0].look.stride = 1.15  # jogging
    elif kind == "long_event":
        lead = min(lr.uniform(4.0, 6.0), dur * 0.1)
        ev = max(min(45.0, dur - 2 * lead), 3.0)
        start = bg.doors[int(np.argmin([abs(d[0]) for d in bg.doors]))] if bg.doors else None
        v = lr.uniform(1.1, 1.4)
        pts = [start] if start else [(-cam.halfw(5.0) - 1.0, 5.0)]
        if start:
            pts.append((start[0] + lr.uniform(-1, 1), zn + 0.5))
        length = sum(math.dist(a, b) for a, b in itertools.pairwise(pts))
        while True:  # wander between random spots until the time budget is used up
            z = lr.uniform(3.8, 7.5)
            nxt = (lr.uniform(-0.75, 0.75) * cam.halfw(z), z)
            exit_ = (math.copysign(cam.halfw(z) + 1.2, nxt[0]), z)
            if len(pts) > 2 and length + math.dist(pts[-1], nxt) + math.dist(nxt, exit_) > v * ev:
                break
            length += math.dist(pts[-1], nxt)
            pts.append(nxt)
        pts.append((math.copysign(cam.halfw(pts[-1][1]) + 1.2, pts[-1][0]), pts[-1][1]))
        lens = [math.dist(a, b) for a, b in itertools.pairwise(pts)]
        ts = [lead + ev * c / sum(lens) for c in np.concatenate([[0], np.cumsum(lens)])]
        look = _person_look(lr, ref(5.0))
        tracks = [
            _Track(
                look,
                ts,
                pts,
                (lead, lead + 0.8) if start else None,
                lr.uniform(0, two_pi),
                (lr.uniform(0, two_pi), lr.uniform(0, two_pi)),
            )
        ]
        tracks.append(
            cross(
                lead + lr.uniform(0.3, 0.6) * ev,
                True,
                zn + 1.4,
                zn + 1.4,
                speed=lr.uniform(5, 10),
                d=1,
            )
        )
    elif kind == "stop_and_go":
        z = lr.uniform(3.8, 6.5)
        tk = walker(lr.uniform(2.0, 4.0), (z, z))
        (xa, _), (xb, _) = tk.p
        d = 1 if xb > xa else -1
        xs = d * lr.uniform(-0.3, 0.3) * cam.halfw(z)
        v = abs(xb - xa) / (tk.t[1] - tk.t[0])
        t1 = tk.t[0] + abs(xs - xa) / v + 0.25  # braking takes a little longer
        t2 = t1 + lr.uniform(14.5, 16.0)
        tk.t, tk.p = (
            [tk.t[0], t1, t2, t2 + abs(xb - xs) / v + 0.25],
            [(xa, z), (xs, z), (xs, z), (xb, z)],
        )
        tracks = [tk]
    elif kind == "busy":
        tracks = _busy(lr, cam, bg, dur, 0.15 if mf is None else mf, cross)
    phases = _phases(bg, cam, names, step)
    return Plan(cam, bg, phases, light, tracks, max(1, round(dur * fps)), fps, nr, fol, changes)


def _busy(
    lr: np.random.Generator,
    cam: _Cam,
    bg: _Bg,
    dur: float,
    mf: float,
    cross: Callable[..., _Track],
) -> list[_Track]:
    """Bursts of crossings covering about mf of the clip; overlapping inside a burst."""
    total, tracks = mf * dur, []
    if mf >= 0.999:
        bursts = [(-1.5, dur + 1.5)]  # someone is already mid-frame on the first frame
    elif total < 1.0:
        bursts = []
    else:
        nb = max(1, min(round(total / 6), int(total / 1.5), int((dur - total) / 2.0) - 1))
        lens = 1.5 + (total - 1.5 * nb) * lr.dirichlet(np.full(nb, 4.0))
        gaps = (dur - total) * lr.dirichlet(np.full(nb + 1, 3.0))
        starts = np.cumsum(gaps[:-1]) + np.concatenate([[0], np.cumsum(lens)[:-1]])
        bursts = [(float(s), float(s + ln)) for s, ln in zip(starts, lens, strict=True)]
    zn, zb = bg.zn, bg.zb

    def lane() -> tuple[float, int]:
        return (
            (lr.uniform(zn + 0.9, zn + 2.0), 1)
            if lr.random() < 0.6
            else (lr.uniform(zb - 5.6, zb - 4.8), -1)
        )

    for a, e in bursts:
        while True:
            car = lr.random() < 0.3
            z, d = lane() if car else (lr.uniform(3.6, 7.0), int(lr.choice([-1, 1])))
            span = 2 * (cam.halfw(z) + (2.3 if car else 0.25))
            nat = span / (lr.uniform(5, 11) if car else lr.uniform(1.1, 1.7))
            ov = lr.uniform(0.3, 1.0)  # next one appears before this one leaves: no gap
            last = e - (a + nat - ov) < 2.0
            if not last:
                tracks.append(cross(a, car, z, z, dur_vis=nat, d=d))
                a += nat - ov
                continue
            dv = e - a
            # pick what can plausibly fill exactly dv seconds: a walker at a suitable depth or a car
            zp = ((dv * lr.uniform(1.1, 1.6)) / 2 - 0.25) * 2 * cam.f / cam.w
            if zp >= 3.6 or dv > 4.5:
                tracks.append(
                    cross(a, False, min(max(zp, 3.6), 9.0), min(max(zp, 3.6), 9.0), dur_vis=dv)
                )
            else:
                z, d = lane()
                tracks.append(cross(a, True, z, z, dur_vis=max(dv, 1.0), d=d))
            break
    return tracks


# ---------------------------------------------------------------------------- rendering
class _Noise:
    """Fresh-looking noise per frame without drawing millions of normals per frame: random
    windows into a pre-drawn field, never close to the previous windows (the encoder's motion
    search must not be able to predict one frame's noise from the last one)."""

    def __init__(self, rng: np.random.Generator, h: int, w: int) -> None:
        b = rng.standard_normal((3 * h, w + 64), dtype=_F)
        b[1:] += 0.45 * b[:-1]  # demosaicing/denoise leave a ~2 px grain, not iid pixels
        b[:, 1:] += 0.45 * b[:, :-1]
        self.b, self.h, self.w, self.rng = b / _F(1.2025), h, w, rng
        self.last: list[tuple[int, int]] = []

    def view(self) -> np.ndarray:
        while True:
            r, c = int(self.rng.integers(0, 2 * self.h + 1)), int(self.rng.integers(0, 65))
            if all(abs(r - r0) >= 24 or abs(c - c0) >= 24 for r0, c0 in self.last):
                break
        self.last = [(r, c), *self.last[:2]]
        return self.b[r : r + self.h, c : c + self.w]


def render_frames(
    plan: Plan, pixels: bool, mask: np.ndarray | None, noise_on: bool = True
) -> Iterator[tuple[np.ndarray | None, bool]]:
    """Yield (yuv420p frame as (h*3/2, w) uint8 or None, something moves visibly).

    noise_on=False renders noise-free frames, which lets tests check the ground truth
    against plain frame differences."""
    cam, bg, fps = plan.cam, plan.bg, plan.fps
    w, h = cam.w, cam.h
    min_px = max(6, round(2.5e-5 * w * h))
    out = np.empty((h * 3 // 2, w), np.uint8)
    ys, us, vs = (
        out[:h],
        out[h : h + h // 4].reshape(h // 2, w // 2),
        out[h + h // 4 :].reshape(h // 2, w // 2),
    )
    f, tmp = np.empty((h, w), _F), np.empty((h, w), _F)
    cf = [np.empty((h // 2, w // 2), _F) for _ in range(2)]
    noise = _Noise(plan.nrng, h, w) if pixels and noise_on else None
    cnoise = _Noise(plan.nrng, h // 2, w // 2) if pixels and noise_on else None
    for i in range(plan.n):
        t = i / fps
        lt = plan.light(t)
        pa = plan.phases[lt.a]
        pb = plan.phases[lt.b] if lt.b and lt.w > 0 else None
        ga, gb = lt.gain * (1 - lt.w if pb else 1.0), lt.gain * lt.w
        sprites, moving = [], False
        for tk in plan.tracks:
            s = sprite_at(tk, cam, t, bg.sun_dir, pa.ir)
            if s is None or (clip := clip_to_frame(s, w, h))[0] is None:
                continue
            li = pa.light[s.foot] * (1 - lt.w if pb else 1.0)
            li += pb.light[s.foot] * lt.w if pb else 0.0
            sprites.append((s, clip, li))
            if not moving and tk.state(t) != tk.state(t - 1 / fps):
                # Ground truth counts what the object (body, shadow, fade-in) visibly changes.
                sl = clip[0]
                before = _static(pa, pb, ga, gb, sl)
                hit = np.abs(_draw(before, s, clip[1], li, lt.gain, pa) - before) >= 4
                if mask is not None:
                    hit &= ~mask[sl]
                moving = int(np.count_nonzero(hit)) >= min_px
        if not pixels:
            yield None, moving
            continue
        np.multiply(pa.base, ga, out=f)
        if pb is not None:
            f += pb.base * _F(gb)
        if pa.u is None:
            cf[0].fill(128.0)
            cf[1].fill(128.0)
        else:
            np.multiply(pa.u, lt.sat, out=cf[0])
            np.multiply(pa.v, lt.sat, out=cf[1])
            cf[0] += 128.0
            cf[1] += 128.0
        if plan.foliage is not None:
            fa, fl = plan.foliage.render(t)
            fs = plan.foliage.sl
            f[fs] = f[fs] * (1 - fa) + fl * pa.light[fs] * _F(lt.gain) * fa
            if pa.u is not None:
                fs2 = (
                    slice(fs[0].start // 2, fs[0].stop // 2),
                    slice(fs[1].start // 2, fs[1].stop // 2),
                )
                fa2 = fa[::2, ::2]
                for k, green in enumerate((-14.0, -9.0)):
                    cf[k][fs2] += (128 + green * lt.sat - cf[k][fs2]) * fa2
        for s, (sl, sub), li in sorted(sprites, key=lambda e: -e[0].z):  # far to near
            a = s.a[sub]
            f[sl] = _draw(f[sl], s, sub, li, lt.gain, pa)
            for oz, osl, ocov in bg.occ:  # lamp posts / trunks in front of this object
                if oz >= s.z:
                    continue
                y0, y1 = max(osl[0].start, sl[0].start), min(osl[0].stop, sl[0].stop)
                x0, x1 = max(osl[1].start, sl[1].start), min(osl[1].stop, sl[1].stop)
                if y1 <= y0 or x1 <= x0:
                    continue
                c = ocov[
                    y0 - osl[0].start : y1 - osl[0].start, x0 - osl[1].start : x1 - osl[1].start
                ]
                st = f[y0:y1, x0:x1]
                st += (_static(pa, pb, ga, gb, (slice(y0, y1), slice(x0, x1))) - st) * c
            if pa.u is not None:
                c2 = (
                    slice(sl[0].start // 2, sl[0].stop // 2),
                    slice(sl[1].start // 2, sl[1].stop // 2),
                )
                a2 = a[::2, ::2]
                for k, ch in enumerate((s.u, s.v)):
                    cf[k][c2] = cf[k][c2] * (1 - a2) + 128 * a2 + ch[sub][::2, ::2] * _F(lt.sat)
        if noise is not None:
            np.multiply(noise.view(), pa.nshape, out=tmp)
            tmp *= _F(lt.sigma * plan.noise)
            f += tmp
        np.clip(f, 0, 255, out=f)
        np.rint(f, out=f)
        ys[...] = f
        for k, dst in enumerate((us, vs)):
            if pa.u is not None and cnoise is not None:
                cf[k] += cnoise.view() * _F(0.3 * lt.sigma * plan.noise * max(lt.sat, 0.3))
            np.clip(cf[k], 0, 255, out=cf[k])
            np.rint(cf[k], out=cf[k])
            dst[...] = cf[k]
        yield out, moving


def _static(
    pa: _Phase, pb: _Phase | None, ga: float, gb: float, sl: tuple[slice, slice]
) -> np.ndarray:
    """The scene without moving things in a region, as the sensor sees it now."""
    r = pa.base[sl] * _F(ga)
    return r + pb.base[sl] * _F(gb) if pb is not None else r


def _draw(
    bgr: np.ndarray, s: _Sprite, sub: tuple[slice, slice], li: float, gain: float, pa: _Phase
) -> np.ndarray:
    """Composite shadow then body of one sprite over a background region."""
    a = s.a[sub]
    if pa.ir and s.ir is not None:
        val = _tone_ir(s.ir[sub] / np.maximum(a, 1e-3) * li) * a * _F(gain)
    else:
        val = s.lum[sub] * _F(li * gain)
    return bgr * (1 - s.sh[sub] * _F(pa.shadow)) * (1 - a) + val


def motion_intervals(flags: list[bool], fps: float) -> tuple[tuple[float, float], ...]:
    res, i, n = [], 0, len(flags)
    while i < n:
        if flags[i]:
            j = i
            while j + 1 < n and flags[j + 1]:
                j += 1
            res.append((round(i / fps, 6), round((j + 1) / fps, 6)))
            i = j
        i += 1
    return tuple(res)


def encode_frames(
    frames: Iterator[tuple[np.ndarray, bool]],
    path: Path,
    w: int,
    h: int,
    fps: float,
    codec: str,
    gop: int,
    bitrate: int | None,
    crf: int,
    bframes: int,
    maxrate: int | None = None,
    dynamic_gop: tuple[int, int] | None = None,
) -> None:
    """Encode (frame, moving) pairs. `dynamic_gop` (frames): a keyframe every `short` frames
    while something moves, every `long` frames otherwise, like the "smart codecs" (H.264+,
    Smart Codec) many cameras ship: the keyframe interval stretches while the scene is static."""
    rate = Fraction(fps).limit_denominator(1001)
    keyint = dynamic_gop[1] if dynamic_gop else gop
    # Fixed GOP without scene-cut keyframes and one slice per frame, like an IP camera.
    if codec == "libx264":
        opts = {
            "preset": "veryfast",
            "x264-params": f"keyint={keyint}:scenecut=0:bframes={bframes}"
            ":sliced-threads=0:slices=1",
        }
    else:
        opts = {
            "preset": "ultrafast",
            "x265-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes={bframes}"
            ":open-gop=0:log-level=error",
        }
    if dynamic_gop:
        opts["forced-idr"] = "1"  # a forced keyframe is an IDR, as a camera's are
    if bitrate:
        opts.update(maxrate=str(bitrate), bufsize=str(bitrate))
    else:
        opts["crf"] = str(crf)
        if maxrate:  # VBR with a cap, the default of most cameras
            opts.update(maxrate=str(maxrate), bufsize=str(maxrate))
    with av.open(str(path), "w", format="mp4") as out:
        st = out.add_stream(codec, rate=rate, options=opts)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.codec_context.time_base = Fraction(rate.denominator, rate.numerator)
        st.codec_context.thread_type = "FRAME"  # sliced threads would split frames into slices
        if bitrate:
            st.codec_context.bit_rate = bitrate
        since_key, moved = 0, False
        for i, (buf, moving) in enumerate(frames):
            fr = av.VideoFrame.from_ndarray(buf, format="yuv420p")
            fr.pts = i
            fr.time_base = st.codec_context.time_base
            if dynamic_gop:
                short, long = dynamic_gop
                if i == 0 or since_key >= (short if moved else long):
                    fr.pict_type = av.video.frame.PictureType.I
                    since_key, moved = 0, False
                since_key += 1
                moved = moved or moving
            out.mux(st.encode(fr))
        out.mux(st.encode(None))


# ---------------------------------------------------------------------------- public API
def make_scene(
    kind: str,
    out_dir: Path,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float = 15,
    duration: float | None = None,
    codec: str = "libx264",
    gop: int | None = None,
    bitrate: int | None = None,
    crf: int = 26,
    bframes: int = 0,
    seed: int = 0,
    motion_fraction: float | None = None,
    maxrate: int | None = None,
    dynamic_gop: tuple[float, float] | None = None,
    noise: float = 1.0,
) -> Scene:
    """Render (or reuse from out_dir) one synthetic recording and its ground truth.

    width/height default to 640x360 (1280x720 for 'small_object'; 16:9 if only one is given).
    The scene geometry scales with the frame, so a seed gives the same scene at any size.
    motion_fraction only applies to 'busy' (default 0.15).
    Rate control: `bitrate` (bit/s) for constant bitrate, else `crf` (constant quality), capped
    at `maxrate` if given (VBR with a cap, what most cameras do). `dynamic_gop=(short, long)`
    (seconds): keyframes every `short` s while something moves, every `long` s otherwise.
    `noise` scales the sensor noise: below 1 for a camera whose temporal noise reduction
    (3D-DNR) leaves little grain, so that a static scene costs a few hundred kbit/s in VBR.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {KINDS}")
    if codec not in ("libx264", "libx265"):
        raise ValueError(f"codec must be libx264 or libx265, not {codec!r}")
    if width is None and height is None:
        width, height = (1280, 720) if kind == "small_object" else (640, 360)
    elif width is None or height is None:  # keep 16:9 when only one side is given
        width = width or round(height * 16 / 9 / 2) * 2
        height = height or round(width * 9 / 16 / 2) * 2
    if width % 2 or height % 2 or width < 64 or height < 64:
        raise ValueError(f"frame size must be even and at least 64x64, got {width}x{height}")
    dur = float(DURATION[kind] if duration is None else duration)
    gop = gop or max(1, round(2 * fps))
    mf = (0.15 if motion_fraction is None else float(motion_fraction)) if kind == "busy" else None
    if mf is not None and not 0.0 <= mf <= 1.0:
        raise ValueError("motion_fraction must be within 0..1")
    rc = f"cbr{bitrate}" if bitrate else f"crf{crf}" + (f"max{maxrate}" if maxrate else "")
    dyn = None
    if dynamic_gop:
        dyn = (max(1, round(dynamic_gop[0] * fps)), max(1, round(dynamic_gop[1] * fps)))
        if dyn[0] > dyn[1]:
            raise ValueError(f"dynamic_gop must be (short, long) seconds, got {dynamic_gop}")
    name = (
        f"{kind}_{width}x{height}_{fps:g}fps_{dur:g}s_{codec}"
        + (f"_gdyn{dyn[0]}-{dyn[1]}" if dyn else f"_g{gop}")
        + f"_{rc}_bf{bframes}"
        + (f"_n{noise:g}" if noise != 1.0 else "")
        + (f"_mf{mf:g}" if mf is not None else "")
        + f"_s{seed}_v{VERSION}"
    )
    out_dir = Path(out_dir)
    path, meta = out_dir / f"{name}.mp4", out_dir / f"{name}.json"
    if path.exists() and meta.exists():
        try:
            d = json.loads(meta.read_text())
            return Scene(
                kind,
                path,
                width,
                height,
                fps,
                d["duration"],
                tuple(tuple(m) for m in d["motion"]),
                tuple(tuple(tuple(p) for p in poly) for poly in d["mask"]),
                tuple(d["global_changes"]),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable synth metadata %s", meta)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not 0.0 <= noise <= 4.0:
        raise ValueError(f"noise must be within 0..4, got {noise}")
    plan = plan_scene(kind, width, height, fps, dur, seed, mf)
    plan.noise = noise
    polys = (plan.foliage.poly,) if plan.foliage is not None else ()
    mask = poly_raster(polys, width, height) if polys else None
    flags: list[bool] = []
    tmp = out_dir / f".{name}.{os.getpid()}.tmp.mp4"
    if path.exists():  # video cached but metadata lost: ground truth only
        flags = [m for _, m in render_frames(plan, False, mask)]
    else:

        def frames() -> Iterator[tuple[np.ndarray, bool]]:
            for buf, moving in render_frames(plan, True, mask):
                flags.append(moving)
                yield buf, moving

        try:
            encode_frames(
                frames(), tmp, width, height, fps, codec, gop, bitrate, crf, bframes, maxrate, dyn
            )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    scene = Scene(
        kind,
        path,
        width,
        height,
        fps,
        round(plan.n / fps, 6),
        motion_intervals(flags, fps),
        polys,
        tuple(round(c, 6) for c in plan.changes),
    )
    tmp_meta = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
    tmp_meta.write_text(
        json.dumps(
            {
                "duration": scene.duration,
                "motion": scene.motion,
                "mask": scene.mask,
                "global_changes": scene.global_changes,
            }
        )
    )
    os.replace(tmp_meta, meta)
    if tmp.exists():
        os.replace(tmp, path)  # last: a complete .mp4 implies complete metadata
    log.info("synth %s: %d frames in %.1fs -> %s", kind, plan.n, time.perf_counter() - t0, path)
    return scene


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m tests.support.synth", description=__doc__.split("\n")[0]
    )
    p.add_argument("kind", choices=KINDS)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--fps", type=float, default=15)
    p.add_argument("--duration", type=float)
    p.add_argument("--codec", default="libx264", choices=("libx264", "libx265"))
    p.add_argument("--gop", type=int)
    p.add_argument("--bitrate", type=int, help="bit/s; constant-bitrate-ish instead of CRF")
    p.add_argument("--crf", type=int, default=26)
    p.add_argument("--noise", type=float, default=1.0, help="sensor noise scale, 0-4")
    p.add_argument("--maxrate", type=int, help="bit/s; caps the CRF encoding (VBR with a cap)")
    p.add_argument(
        "--dynamic-gop",
        type=float,
        nargs=2,
        metavar=("SHORT", "LONG"),
        help="s between keyframes while something moves, and while nothing does",
    )
    p.add_argument("--bframes", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--motion-fraction", type=float)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        scene = make_scene(
            a.kind,
            a.out_dir,
            width=a.width,
            height=a.height,
            fps=a.fps,
            duration=a.duration,
            codec=a.codec,
            gop=a.gop,
            bitrate=a.bitrate,
            crf=a.crf,
            bframes=a.bframes,
            seed=a.seed,
            motion_fraction=a.motion_fraction,
            maxrate=a.maxrate,
            dynamic_gop=tuple(a.dynamic_gop) if a.dynamic_gop else None,
            noise=a.noise,
        )
    except ValueError as exc:  # a bad combination of options: say which, no traceback
        p.error(str(exc))
    print(json.dumps({**dataclasses.asdict(scene), "path": str(scene.path)}, indent=2))


if __name__ == "__main__":
    main()
