"""The motion detector on plain numpy frames: noise, light, masks, small and stopped objects."""

from __future__ import annotations

import numpy as np
import pytest

from agent.capture.motion import (
    INIT_FRAMES,
    INIT_TIME,
    MotionDetector,
    downscale,
    rasterize,
    structure_changed,
)
from agent.config import MotionSettings

W, H, FPS = 640, 360, 5.0


def texture(seed: int = 0, w: int = W, h: int = H) -> np.ndarray:
    """A static scene: smooth shading plus multi-scale texture, values roughly 40..200."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.float32)
    for scale, amp in ((40, 40.0), (10, 20.0), (2, 8.0)):
        small = rng.normal(0, 1, (h // scale + 2, w // scale + 2)).astype(np.float32)
        img += amp * np.kron(small, np.ones((scale, scale), np.float32))[:h, :w]
    img += np.linspace(0, 40, w, dtype=np.float32)[None, :]
    return np.clip(img + 110, 0, 255)


class Scene:
    def __init__(self, seed: int = 0, noise: float = 4.0, w: int = W, h: int = H) -> None:
        self.bg = texture(seed, w, h)
        self.noise = noise
        self.rng = np.random.default_rng(seed + 1)

    def frame(self, gain: float = 1.0, boxes=()) -> np.ndarray:
        img = self.bg * gain
        for x, y, bw, bh, level in boxes:
            img[y : y + bh, x : x + bw] = level
        img = img + self.rng.normal(0, self.noise, img.shape)
        return np.clip(img, 0, 255).astype(np.uint8)


def run(det: MotionDetector, frames, start: float = 0.0):
    return [det.analyse(f, start + i / FPS) for i, f in enumerate(frames)]


def detector(settings=None, w=W, h=H, mask=()) -> MotionDetector:
    return MotionDetector(settings or MotionSettings(), w, h, mask)


def test_static_noisy_scene_never_moves():
    scene = Scene(noise=6.0)
    results = run(detector(), (scene.frame() for _ in range(300)))
    assert not any(r.motion for r in results), max(r.score for r in results)


def test_walking_object_is_detected_where_it_is():
    scene, det = Scene(), detector()
    run(det, (scene.frame() for _ in range(10)))
    results = [
        det.analyse(scene.frame(boxes=[(100 + 12 * i, 150, 30, 60, 230)]), 2 + i / FPS)
        for i in range(20)
    ]
    assert all(r.motion for r in results[1:])
    x0, y0, x1, y1 = results[10].box
    assert x0 < (100 + 120 + 30) / W and x1 > (100 + 120) / W and y0 < 210 / H and y1 > 150 / H


def test_small_distant_person_at_720p_is_caught():
    scene = Scene(w=1280, h=720)
    det = detector(w=1280, h=720)
    run(det, (scene.frame() for _ in range(10)))
    level = float(scene.bg[300:348, 600:700].mean()) + 35  # 35 levels of contrast
    results = [
        det.analyse(scene.frame(boxes=[(600 + 4 * i, 300, 24, 48, level)]), 2 + i / FPS)
        for i in range(15)
    ]
    assert sum(r.motion for r in results) >= 12


def test_stopped_object_stops_being_motion_and_is_absorbed():
    scene, det = Scene(), detector(MotionSettings(absorb_time=10))
    run(det, (scene.frame() for _ in range(10)))
    walk = [
        det.analyse(scene.frame(boxes=[(100 + 10 * i, 150, 40, 80, 240)]), 2 + i / FPS)
        for i in range(10)
    ]
    assert all(r.motion for r in walk[1:])
    parked = [(100 + 90, 150, 40, 80, 240)]
    still = [det.analyse(scene.frame(boxes=parked), 4 + i / FPS) for i in range(150)]
    first_still = next(i for i, r in enumerate(still) if not r.motion)
    assert first_still / FPS <= 1.6, "a stopped object kept the motion going"
    assert not any(r.motion for r in still[first_still:])
    # Absorbed: after absorb_time the parked object no longer differs from the background.
    assert abs(det.background[150 // 2 + 20, 190 // 2 + 10] - 240) < 15


def test_gradual_dusk_is_not_motion():
    scene, det = Scene(), detector()
    frames = (scene.frame(gain=1.0 - 0.8 * i / 600) for i in range(600))  # 2 minutes, x0.2
    assert not any(r.motion for r in run(det, frames))


@pytest.mark.parametrize("gain", [1.8, 0.45])
def test_light_switch_is_a_global_change_not_motion(gain):
    scene, det = Scene(), detector()
    before = run(det, (scene.frame() for _ in range(20)))
    after = run(det, (scene.frame(gain=gain) for _ in range(50)), start=4)
    assert not any(r.motion for r in before + after)


def test_uneven_light_switch_re_baselines_and_motion_right_after_counts():
    scene, det = Scene(), detector()
    run(det, (scene.frame() for _ in range(20)))
    lamp = np.ones((H, W), np.float32)
    lamp[:, W // 3 :] = 2.0  # two thirds of the scene lit up, one third not
    scene.bg = np.clip(scene.bg * lamp, 0, 255)
    after = run(det, (scene.frame() for _ in range(5)), start=4)
    assert any(r.global_change for r in after) and not any(r.motion for r in after)
    walk = [
        det.analyse(scene.frame(boxes=[(50 + 12 * i, 100, 30, 60, 20)]), 5 + i / FPS)
        for i in range(10)
    ]
    assert sum(r.motion for r in walk) >= 8


def test_motion_inside_a_mask_is_ignored():
    mask = [[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]]
    scene, det = Scene(), detector(mask=mask)
    run(det, (scene.frame() for _ in range(10)))
    inside = [
        det.analyse(scene.frame(boxes=[(20 + 10 * i, 100, 40, 80, 240)]), 2 + i / FPS)
        for i in range(15)
    ]
    assert not any(r.motion for r in inside)
    outside = [
        det.analyse(scene.frame(boxes=[(400 + 10 * i, 100, 40, 80, 240)]), 5 + i / FPS)
        for i in range(15)
    ]
    assert sum(r.motion for r in outside) >= 13


def test_rasterize_fills_polygon_interior():
    square = rasterize([[(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)]], 8, 8)
    assert square.sum() == 16 and square[2:6, 2:6].all()
    triangle = rasterize([[(0, 0), (1, 0), (0, 1)]], 10, 10)
    assert triangle[0, 0] and not triangle[9, 9]


def test_downscale_of_a_strided_plane_matches_block_samples():
    plane = np.arange(24 * 40, dtype=np.uint8).reshape(24, 40)[:, :36]  # line size 40, width 36
    small = downscale(plane, 4, (6, 9))
    assert small.shape == (6, 9)
    assert small[0, 0] == pytest.approx(plane[[1, 1, 3, 3], [1, 3, 1, 3]].mean())


def test_structure_check_tells_light_from_new_content():
    bg = texture()[:64, :64]
    lit = np.clip(bg * 1.7 + 10, 0, 255)
    assert not structure_changed(lit, bg).any()
    other = texture(seed=5)[:64, :64]
    assert structure_changed(other, bg).mean() > 0.6  # both share the scene-wide gradient


# -- light changes: brightness or contrast, -60 % to +60 %, instant or ramped, and back -------

SIZES = [(320, 240), (1280, 720), (1920, 1080)]
CHANGES = [-0.6, -0.35, -0.15, 0.15, 0.35, 0.6]


class LitScene:
    """A street-like static picture with a near-white sky band (it clips when the light goes
    up) and a near-black doorway (it clips when the light goes down), sensor noise cycled from
    a few pre-drawn fields, and the light applied as a tone curve (a lookup table on uint8)."""

    def __init__(self, w: int, h: int, seed: int = 0, noise: float = 3.0) -> None:
        img = texture(seed, w, h) * 0.85 + 5
        img[: h // 5] = 222 + 8 * (img[: h // 5] - img[: h // 5].mean()) / img.std()
        img[h // 2 : h // 2 + h // 6, w // 8 : w // 4] *= 0.2
        rng = np.random.default_rng(seed + 7)
        self.fields = [
            np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
            for _ in range(4)
        ]
        self.pivot = float(img.mean())
        self.w, self.h, self.i = w, h, 0

    def frame(self, k: float = 1.0, mode: str = "gain", person=None) -> np.ndarray:
        self.i += 1
        img = self.fields[self.i % len(self.fields)]
        if person is not None:
            x, y, pw, ph = person
            img = img.copy()
            img[y : y + ph, x : x + pw] = 60
            img[y : y + ph // 3, x : x + pw] = 150  # shirt
        if k == 1.0:
            return img
        levels = np.arange(256, dtype=np.float32)
        lut = levels * k if mode == "gain" else self.pivot + (levels - self.pivot) * k
        return np.clip(np.rint(lut), 0, 255).astype(np.uint8)[img]


def light_level(t: float, change: float, ramp: float, at: float, back: float, mode: str):
    """The light's factor at `t`: 1 before `at`, 1 + change after (gain: geometric ramp)."""

    def u(t0: float) -> float:
        return 1.0 if t >= t0 + ramp else max(0.0, (t - t0) / ramp) if t >= t0 else 0.0

    x = u(at) - u(back)
    return (1 + change) ** x if mode == "gain" else 1 + change * x


def lit_run(w, h, change, ramp, mode, walk=None, at=4.0, back=9.0, seconds=13.0):
    """Analyses at 5 fps; with `walk` (s after `at`) a person crosses the frame at 3 s."""
    scene, det = LitScene(w, h), detector(w=w, h=h)
    out = []
    for i in range(round(seconds * FPS)):
        t = i / FPS
        person = None
        if walk is not None and at + walk <= t < at + walk + 3.0:
            pw, ph = w // 16, h // 4
            x = int((t - at - walk) / 3.0 * (w - pw))
            person = (x, h // 2, pw, ph)
        k = light_level(t, change, ramp, at, back, mode)
        out.append((det.analyse(scene.frame(k, mode, person), t), person))
    return out


@pytest.mark.parametrize("ramp", [0.0, 1.0], ids=["instant", "ramp1s"])
@pytest.mark.parametrize("mode", ["gain", "contrast"])
@pytest.mark.parametrize("w, h", SIZES, ids=lambda v: str(v))
def test_a_light_change_and_back_is_never_motion(w, h, mode, ramp):
    for change in CHANGES:
        results = [r for r, _ in lit_run(w, h, change, ramp, mode)]
        moving = [(r.t, round(r.score, 5)) for r in results if r.motion]
        assert not moving, f"{mode} {change:+.0%} ramp {ramp}: motion at {moving}"
        unsteady = [r.t for r in results if not r.steady]
        assert all(t >= 4.0 - 1e-6 for t in unsteady), unsteady
        if abs(change) >= 0.35:  # a marked change is seen (keyframes avoid it)
            assert unsteady, f"{mode} {change:+.0%} ramp {ramp}: not seen"


@pytest.mark.parametrize("walk", [0.0, 1.0], ids=["during", "after"])
@pytest.mark.parametrize("change", [-0.6, -0.35, 0.35, 0.6])
@pytest.mark.parametrize("w, h", SIZES, ids=lambda v: str(v))
def test_a_person_walking_during_or_right_after_a_light_change_is_caught(w, h, change, walk):
    for mode, ramp in (("gain", 0.0), ("contrast", 1.0)):
        results = lit_run(w, h, change, ramp, mode, walk=walk, seconds=9.0)
        with_person = [(r, p) for r, p in results if p is not None][1:]
        caught = [(r, p) for r, p in with_person if r.motion]
        assert len(caught) >= 0.8 * len(with_person), (mode, [r.t for r, _ in caught])
        for r, (x, _, pw, ph) in caught:  # the person, not the light: its size, where it is
            assert r.score < 2 * pw * ph / (w * h), (mode, r.t, r.score)
            assert r.box[0] <= (x + pw) / w and r.box[2] >= x / w, (mode, r.t, r.box, x / w)
        before = [r for r, p in results if p is None and r.t < 4.0 + walk]
        assert not any(r.motion for r in before), (mode, [r.t for r in before if r.motion])


# -- cold start: the first background is a median of the first second ------------------------


@pytest.mark.parametrize("fps", [2.0, 5.0, 15.0])
@pytest.mark.parametrize("w, h", SIZES, ids=lambda v: str(v))
def test_no_verdict_until_the_background_can_be_trusted_and_no_motion_after(w, h, fps):
    scene, det = LitScene(w, h, noise=6.0), detector(w=w, h=h)
    results = [det.analyse(scene.frame(), i / fps) for i in range(round(8 * fps))]
    warming = [r.t for r in results if r.warming_up]
    assert len(warming) >= INIT_FRAMES, warming
    assert not results[len(warming)].warming_up
    assert results[len(warming)].t == pytest.approx(max(INIT_TIME, INIT_FRAMES / fps))
    assert not any(r.motion for r in results), [r.t for r in results if r.motion]


@pytest.mark.parametrize("w, h", SIZES, ids=lambda v: str(v))
def test_an_object_moving_from_the_first_frame_is_caught_once_the_background_is_trusted(w, h):
    scene, det = LitScene(w, h), detector(w=w, h=h)
    pw, ph = w // 16, h // 4
    results = []
    for i in range(40):  # it crosses in 4 s, then the street is empty
        t = i / FPS
        x = int(w * 0.1 + t / 4.0 * w)
        person = (x, h // 2, pw, ph) if x + pw < w else None
        results.append((det.analyse(scene.frame(person=person), t), person))
    first = next(r for r, _ in results if not r.warming_up)
    assert first.t == pytest.approx(INIT_TIME) and first.motion
    x0, _, x1, _ = first.box  # the person where it is now, not where it stood at the start
    now = int(w * 0.1 + INIT_TIME / 4.0 * w)
    assert x0 <= (now + pw) / w and x1 >= now / w and x0 > 0.1, first.box
    gone = next(r.t for r, p in results if p is None)
    late = [r.t for r, p in results if p is None and r.t >= gone + 1.2 and r.motion]
    assert not late, late  # nothing of the first frames' person lingers as motion
