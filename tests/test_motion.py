"""The motion detector on plain numpy frames: noise, light, masks, small and stopped objects."""

from __future__ import annotations

import numpy as np
import pytest

from agent.capture.motion import MotionDetector, downscale, rasterize, structure_changed
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
