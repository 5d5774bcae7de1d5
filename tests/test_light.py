"""Light changes, cold starts and keyframes through the whole pipeline, on video encoded by
libx264 through PyAV (tests/support/scenes.py on synth.py), gate on and off."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.capture.motion import INIT_FRAMES, INIT_TIME, MotionDetector
from agent.config import MotionSettings, parse
from agent.replay import replay
from tests.support.media import overlaps
from tests.support.scenes import make_light_scene, object_boxes, shows_object
from tests.support.synth import make_scene

SLACK = 1.5


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("light-scenes")


def run(path: Path, out: Path, gate: str) -> list[dict]:
    config = parse({"motion": {"gate": gate}, "cameras": [{"name": "cam", "url": str(path)}]})
    return replay(path, out, config, "cam")


def check(scene, clips: list[dict]) -> None:
    events = [(c["event_start"], c["event_end"]) for c in clips]
    for truth in scene.motion:
        assert any(overlaps(truth, e, SLACK) for e in events), (truth, events)
    for e in events:
        assert any(overlaps(t, e, SLACK) for t in scene.motion), f"false clip {e}: {scene}"


# (size, mode, change, ramp s, at s, walk s after the change or None): keyframe or mid-GOP (GOP
# 2 s), up and down, instant and ramped, empty street or someone crossing during or after it.
CELLS = [
    ((320, 240), "gain", 0.35, 0.0, 8.6, None),
    ((320, 240), "contrast", -0.6, 1.0, 8.0, 1.0),
    ((1280, 720), "gain", -0.35, 0.0, 8.0, -0.5),
    ((1280, 720), "contrast", 0.6, 0.0, 8.6, None),
    ((1920, 1080), "gain", 0.6, 1.0, 8.6, 1.0),
    ((1920, 1080), "gain", -0.6, 0.0, 8.0, None),
]


@pytest.mark.parametrize("gate", ["auto", "off"])
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"{c[0][0]}p-{c[1]}{c[2]:+}-r{c[3]}-at{c[4]}")
def test_a_light_change_and_back_cuts_no_clip_and_a_person_in_it_is_caught(
    folder, tmp_path, cell, gate
):
    (w, h), mode, change, ramp, at, walk = cell
    scene = make_light_scene(
        folder, change=change, mode=mode, ramp=ramp, at=at, back=at + 6.0, walk=walk,
        width=w, height=h, duration=18.0,
    )  # fmt: skip
    assert bool(scene.motion) == (walk is not None)
    check(scene, run(scene.path, tmp_path, gate))


@pytest.mark.parametrize("size", [(320, 240), (1280, 720)], ids=str)
def test_someone_crossing_at_start_is_caught_once_the_background_is_trusted(folder, tmp_path, size):
    scene = make_light_scene(
        folder, change=0.0, at=0.0, back=None, walk=-2.0, width=size[0], height=size[1],
        duration=12.0,
    )  # fmt: skip
    assert scene.motion[0][0] == 0.0  # moving in the very first frame
    clips = run(scene.path, tmp_path, "auto")
    check(scene, clips)
    assert len(clips) == 1 and clips[0]["start"] == 0.0
    # The event starts at the first verdict: INIT_TIME after the start (analyses at 5 fps).
    assert clips[0]["event_start"] == pytest.approx(INIT_TIME, abs=0.21)


def test_a_resolution_change_restarts_detection_without_a_clip_of_its_own(
    folder, tmp_path, monkeypatch
):
    """A static street at 640x360, then (the camera reconfigured) someone already crossing at
    320x240: one clip, for the person, starting once the new background can be trusted."""
    seen: list[tuple[tuple[int, int], float, bool]] = []
    analyse = MotionDetector.analyse

    def spy(self, luma, t):
        result = analyse(self, luma, t)
        seen.append((self.size, t, result.warming_up))
        return result

    monkeypatch.setattr(MotionDetector, "analyse", spy)
    quiet = make_scene("static_noise", folder, duration=10)
    busy = make_light_scene(
        folder, change=0.0, at=0.0, back=None, walk=-2.5, width=320, height=240, duration=10.0
    )
    listing = tmp_path / "list.txt"
    listing.write_text(f"file '{quiet.path}'\nfile '{busy.path}'\n")
    joined = tmp_path / "joined.ts"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing), "-c",
         "copy", "-bsf:v", "h264_mp4toannexb", "-f", "mpegts", str(joined)],
        check=True,
    )  # fmt: skip
    clips = run(joined, tmp_path / "out", "auto")
    events = [(c["event_start"], c["event_end"]) for c in clips]
    assert len(clips) == 1, events
    small = [(t, warming) for size, t, warming in seen if size == (320, 240)]
    # The first verdict at the new size: after INIT_FRAMES analyses spanning INIT_TIME. The
    # decoder carries on through the change: the new size is analysed without a hole.
    gaps = [b[0] - a[0] for a, b in zip(small, small[1:10], strict=False)]
    assert max(gaps) <= 1.5 / MotionSettings().detect_fps, small[:10]
    warm = [t for t, warming in small if warming]
    trusted = next(t for t, warming in small if not warming)
    assert len(warm) >= INIT_FRAMES and trusted - small[0][0] >= INIT_TIME - 1e-6, small[:8]
    assert all(t < trusted for t in warm)
    assert events[0][0] == pytest.approx(trusted), (events, small[:8])


@pytest.mark.parametrize("kind", ["walk", "light_switch_motion"])
def test_keyframes_show_the_object_whole_and_in_steady_light(folder, tmp_path, kind):
    scene = make_scene(kind, folder)
    boxes = object_boxes(kind, scene.width, scene.height, fps=scene.fps)
    clips = run(scene.path, tmp_path, "auto")
    times = [t for c in clips for t in c["keyframe_times"]]
    assert times
    shown = [t for t in times if shows_object(boxes[round(t * scene.fps)], 0.6)]
    changes = [(c, c + 1.8) for c in scene.global_changes]
    steady = [t for t in shown if not any(a <= t <= b for a, b in changes)]
    assert len(steady) >= 0.9 * len(times), (times, shown, steady)
