"""The compressed-domain gate: its logic on plain numbers, then the pipeline on real H.264 video
(libx264 through PyAV) with the gate on against the same video decoded in full."""

from __future__ import annotations

import gc
import logging
import math
import random
import re
import weakref

import pytest

from agent.capture import pipeline
from agent.capture.gate import MAX_GOP, Gate
from agent.capture.pipeline import CameraPipeline
from agent.capture.session import Session
from agent.config import CameraConfig, MotionSettings
from agent.replay import DirectorySink
from tests.support.media import overlaps
from tests.support.synth import make_scene

FPS, GOP = 15, 30  # 2 s GOPs


class Stream:
    """Packet sizes like a static camera's: a large keyframe, P-frames with noise, the first
    few after the keyframe larger."""

    def __init__(self, gate: Gate, seed: int = 0, gop: int = GOP, fps: float = FPS) -> None:
        self.gate, self.rng, self.gop, self.fps = gate, random.Random(seed), gop, fps
        self.i = 0
        self.wakes: list[tuple[float, object]] = []
        self.scale = 1.0

    @property
    def t(self) -> float:
        return self.i / self.fps

    def size(self, pos: int) -> int:
        if pos == 0:
            return int(self.scale * 80_000)
        return int(self.scale * (10_000 * (1 + 0.8 * 0.6**pos)) * self.rng.uniform(0.85, 1.15))

    def run(self, seconds: float, extra=None, busy: bool = False, moving: bool = False):
        """Feed packets; `extra(pos)` adds bytes (motion); motion verdicts while awake."""
        end = self.i + round(seconds * self.fps)
        while self.i < end:
            pos = self.i % self.gop
            size = self.size(pos) + (extra(pos) if extra else 0)
            t = self.t
            w = self.gate.packet(t, size, pos == 0, pts=t, busy=busy)
            if w is not None:
                self.wakes.append((t, w))
            if self.gate.awake:
                self.gate.motion(t, moving)
            elif pos == 0 and self.gate.looking:  # keyframes the gate has analysed
                w = self.gate.keyframe(t, quiet=not moving)
                if w is not None:
                    self.wakes.append((t, w))
            self.i += 1
        return self


def test_static_scene_sleeps_after_the_first_gop_and_stays_asleep():
    s = Stream(Gate()).run(2.0)
    assert s.gate.awake, "asleep before a GOP was seen"
    s.run(0.1)
    assert not s.gate.awake and s.gate.mode == "asleep", s.gate.mode
    s.run(600)
    assert s.wakes == [] and not s.gate.awake, s.wakes


def test_a_sustained_rise_in_p_frame_sizes_wakes_it_from_this_gops_keyframe():
    s = Stream(Gate()).run(30)
    assert not s.gate.awake
    s.run(2.0, extra=lambda pos: 0 if pos == 0 else 3_000)  # +30 %: something moves
    assert s.wakes, "a 30 % rise of every P-frame did not wake the gate"
    t, wake = s.wakes[0]
    assert wake.since == 30.0 and "frame sizes" in wake.reason, wake
    # Late is harmless: the catch-up decodes from the keyframe, so detection misses nothing.
    assert t - 30.0 < 1.5, f"woke {t - 30.0:.2f} s after the rise began"


def test_single_large_frames_never_wake_it_however_large():
    """Rate control makes single frames jump; waking later costs nothing (the catch-up decodes
    from the keyframe), so only a sustained rise wakes the gate."""
    s = Stream(Gate()).run(31)  # mid-GOP
    for _ in range(20):
        s.run(1 / FPS, extra=lambda pos: 200_000)  # 20x, once
        s.run(10 / FPS)
    assert s.wakes == [], s.wakes


def test_a_run_of_much_larger_frames_wakes_it():
    s = Stream(Gate()).run(31)
    s.run(8 / FPS, extra=lambda pos: 20_000)
    assert [w.since for _, w in s.wakes] == [30.0], s.wakes


def test_p_frames_growing_less_than_their_noise_do_not_wake_it():
    s = Stream(Gate()).run(30)
    s.run(120, extra=lambda pos: 0 if pos == 0 else 300)  # +3 %, inside the ±15 % noise
    assert s.wakes == [], s.wakes


def test_something_seen_at_a_keyframe_wakes_it_from_the_keyframe_analysed_before():
    s = Stream(Gate(), gop=FPS).run(30)  # 1 s GOPs
    before = s.gate.asleep_keys[-1]  # asleep, keyframes are analysed 2 s apart (every other one)
    s.run(before + 2.0 - s.t)
    s.run(1 / FPS, moving=True)  # the next keyframe analysed shows something
    assert [w.since for _, w in s.wakes] == [pytest.approx(before)], s.wakes
    assert "keyframe" in s.wakes[0][1].reason


def test_asleep_it_analyses_a_keyframe_every_2_s_and_every_one_in_a_clip():
    s = Stream(Gate(), gop=FPS).run(30)  # 1 s GOPs
    looked = []
    for _ in range(10):
        s.run(1.0)
        looked.append(s.gate.looking)
    assert looked.count(True) == 5 and looked[::2] != looked[1::2], looked
    s.i += 1  # (past the keyframe)
    for _ in range(5):
        s.run(1.0 - 1 / FPS)
        s.gate.packet(s.t, 80_000, True, s.t, event=True)
        s.i += 1
        assert s.gate.looking
    s = Stream(Gate()).run(30)  # 2 s GOPs: every keyframe
    for _ in range(5):
        s.run(2.0)
        assert s.gate.looking


def test_it_stays_awake_while_motion_lasts_and_for_the_hold_then_sleeps_at_a_keyframe():
    gate = Gate(hold=5.0)
    s = Stream(gate).run(30)
    s.run(1 / FPS, moving=True)
    s.run(10, moving=True)
    assert gate.awake
    s.run(4.0)  # motion ended at ~41 s; hold until ~46 s
    assert gate.awake, "fell asleep within the hold"
    s.run(3.0)  # the keyframe at 46 s is the first after the hold
    assert not gate.awake, gate.mode


def test_it_does_not_sleep_while_a_clip_is_open():
    s = Stream(Gate(hold=1.0)).run(20, busy=True)
    assert s.gate.awake


def test_the_baseline_follows_a_bitrate_change():
    s = Stream(Gate()).run(30)
    s.scale = 1.6  # the camera's bitrate went up (or night noise came)
    s.run(60)
    assert s.wakes, "a 60 % jump in every P-frame went unnoticed"
    n = len(s.wakes)
    s.run(120)
    assert not s.gate.awake and len(s.wakes) == n, f"still waking: {s.wakes[n:]}"


VBR_STRUCTURES = pytest.mark.parametrize(
    "gops, bframes",
    [((30,), False), ((120,), False), ((30, 60, 150), False), ((30,), True)],
    ids=["gop-2s", "gop-8s", "dynamic-gop-2-10s", "b-frames"],
)


class VbrStream(Stream):
    """Sizes like a camera's VBR encoder on a static scene: a keyframe carrying most of the
    bits, P-frames of a few hundred bytes that shrink over the first second after it, log-normal
    noise and single frames that rate control makes 2-3x larger; optionally B-frames (decode
    order I P B B P B B ...) and a keyframe interval that changes."""

    def __init__(self, gate: Gate, seed: int = 0, gops=(GOP,), bframes: bool = False):
        super().__init__(gate, seed)
        self.gops, self.bframes = gops, bframes
        self.next_key, self.pos = 0, 0

    def run(self, seconds: float, extra=None, busy: bool = False, moving: bool = False):
        end = self.i + round(seconds * self.fps)
        while self.i < end:
            key = self.i == self.next_key
            if key:
                self.next_key = self.i + self.rng.choice(self.gops)
                self.pos = 0
            pts, b = self.i, False
            if self.bframes and not key:
                phase = self.pos % 3  # P (shown after the next two), B, B
                pts, b = (self.i + 2, False) if phase == 0 else (self.i - 1, True)
            rng = self.rng
            if key:
                size = 150_000 * rng.uniform(0.98, 1.02)
            else:
                size = 300 * (1 + 12 * 0.75**self.pos) * math.exp(rng.gauss(0, 0.2))
                size *= 0.1 if b else 1.0
                if rng.random() < 0.02:
                    size *= rng.uniform(2, 3)
            size = int(size) + (extra(self.pos) if extra and not key else 0)
            t = self.t
            w = self.gate.packet(t, size, key, pts=pts / self.fps, busy=busy)
            if w is not None:
                self.wakes.append((t, w))
            if self.gate.awake:
                self.gate.motion(t, moving)
            elif key:
                w = self.gate.keyframe(t, quiet=not moving)
                if w is not None:
                    self.wakes.append((t, w))
            self.i += 1
            self.pos += 1
        return self


@VBR_STRUCTURES
def test_a_vbr_static_scene_sleeps_without_waking(gops, bframes):
    for seed in range(5):
        s = VbrStream(Gate(), seed, gops, bframes).run(600)  # 10 minutes
        assert not s.gate.awake and s.wakes == [], f"seed {seed}: {s.gate.mode}, {s.wakes}"


@VBR_STRUCTURES
def test_a_person_walking_into_a_vbr_scene_wakes_it_within_a_second(gops, bframes):
    for seed in range(5):
        s = VbrStream(Gate(), seed, gops, bframes).run(60)
        start = s.t + 0.1 * (seed + 1)
        s.run(start - s.t)
        s.run(2.0, extra=lambda pos: 1_200)  # a person: P-frames 3-5x their quiet size
        woke = [t for t, w in s.wakes if "frame sizes" in w.reason]
        # Late is harmless: the catch-up decodes from the keyframe, so detection misses nothing.
        assert woke and woke[0] - start < 1.0, f"seed {seed}: woke {woke} for motion at {start}"


def test_a_camera_that_sends_only_keyframes_is_decoded_in_full():
    gate = Gate()
    for i in range(300):
        gate.packet(i / FPS, 50_000, True, i / FPS)
    assert gate.awake and gate.mode == "full: only keyframes", gate.mode


def test_a_gop_longer_than_the_limit_means_full_decoding():
    gate = Gate()
    s = Stream(gate, gop=round((MAX_GOP + 1) * FPS)).run(60)
    assert gate.awake and gate.mode.startswith("full: GOP over"), gate.mode
    assert s.wakes == []


def test_keyframes_that_stop_coming_wake_it():
    gate = Gate()
    s = Stream(gate).run(30.1)
    assert not gate.awake
    s.gop = 10**6  # no keyframe from 30 s on
    s.run(MAX_GOP + 0.5)
    assert gate.awake and [w.reason for _, w in s.wakes] == ["keyframe overdue"], s.wakes


def test_probes_decode_one_gop_in_full_that_often():
    gate = Gate(probe=20.0)
    awake_keys = []
    s = Stream(gate)
    for _ in range(50):  # 100 s in GOPs
        s.run(1 / FPS)
        if gate.awake:
            awake_keys.append(round(s.t - 1 / FPS, 3))
        s.run(2.0 - 1 / FPS)
    assert s.wakes == []
    probes = [t for t in awake_keys if t >= 2.0]
    assert len(probes) == 5 and all(b - a >= 20.0 for a, b in zip(probes, probes[1:])), probes


# -- the pipeline on real video ---------------------------------------------------------------


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate-scenes")
    return lambda kind, **kw: make_scene(kind, folder, **kw)


def run(scene, tmp_path, gate: str):
    cam = CameraConfig(
        name="cam", url=str(scene.path), realtime=False, motion=MotionSettings(gate=gate)
    )
    events: list[tuple[float, float]] = []
    out = tmp_path / gate
    pipe = CameraPipeline(
        cam, DirectorySink(out), on_clip=lambda c: events.append((c.event_start, c.event_end))
    )
    pipe.run()
    return events, pipe.stats


def same_events(scene, tmp_path):
    """Gate on and off find the same events (starting within one analysis interval) and both
    match the scene's truth. Returns the gated run's stats."""
    full, _ = run(scene, tmp_path, "off")
    gated, stats = run(scene, tmp_path, "auto")
    interval = 1.0 / MotionSettings().detect_fps
    assert len(gated) == len(full), f"{scene.kind}: gate on {gated}, off {full}"
    for a, b in zip(full, gated, strict=True):
        assert b[0] - a[0] <= interval + 1e-6, f"{scene.kind}: event {b} starts after {a}"
        assert abs(b[1] - a[1]) <= 2 * interval, f"{scene.kind}: event {b} ends unlike {a}"
    for truth in scene.motion:
        assert any(overlaps(truth, e, 1.5) for e in gated), f"{truth} missed: {gated}"
    return stats


@pytest.mark.parametrize(
    "kind, kw",
    [
        ("small_object", {}),  # a distant person, ~48 px tall at 720p: no P-frame signal
        ("stop_and_go", {"duration": 30}),  # stops, stands, walks on slowly
        ("dusk", {}),  # light falls and the sensor noise rises
        ("ir_switch", {}),  # night: IR switch, then someone walks through the grainy picture
    ],
)
def test_gated_pipeline_finds_the_same_events_as_full_decoding(scenes, tmp_path, kind, kw):
    stats = same_events(scenes(kind, **kw), tmp_path)
    assert stats.frames_skipped > 0, f"{kind}: the gate never slept ({stats.gate})"


def test_a_gop_at_the_limit_is_gated_and_finds_the_same_events(scenes, tmp_path):
    scene = scenes("walk", duration=30, gop=round(MAX_GOP * 15))
    stats = same_events(scene, tmp_path)
    assert stats.frames_skipped > 0, stats.gate


@pytest.mark.parametrize(
    "kw, mode",
    [
        ({"gop": round((MAX_GOP + 2) * 15)}, "full: GOP over"),
        ({"gop": 1}, "full: only keyframes"),
    ],
)
def test_unsuitable_streams_are_decoded_in_full(scenes, tmp_path, kw, mode):
    scene = scenes("walk", duration=20, **kw)
    events, stats = run(scene, tmp_path, "auto")
    assert stats.frames_skipped == 0 and stats.gate.startswith(mode), stats.gate
    for truth in scene.motion:
        assert any(overlaps(truth, e, 1.5) for e in events), f"{truth} missed: {events}"


def test_probes_decode_whole_gops_of_a_static_scene_and_find_nothing(scenes, tmp_path):
    scene = scenes("static_noise")  # 20 s, 2 s GOPs
    runs = {}
    for probe in (0.0, 6.0):
        cam = CameraConfig(
            name="cam",
            url=str(scene.path),
            realtime=False,
            motion=MotionSettings(gate="auto", gate_probe=probe),
        )
        clips: list = []
        pipe = CameraPipeline(cam, DirectorySink(tmp_path / str(probe)), on_clip=clips.append)
        pipe.run()
        assert clips == [], f"probe {probe}: clips on a static scene"
        runs[probe] = pipe.stats
    extra = runs[6.0].frames_decoded - runs[0.0].frames_decoded
    # one GOP (29 P-frames) decoded in full every 6 s, the first right after the first GOP
    assert 2 * 29 <= extra <= 4 * 29, (runs[0.0], runs[6.0])
    assert runs[6.0].frames_skipped > 0


# -- camera-like encodings: VBR, long and dynamic GOPs, HEVC, 25 fps, B-frames ---------------

# Little sensor noise (a camera's 3D noise reduction): a static scene's VBR P-frames are then a
# few hundred bytes and rate control moves them about, as on real cameras.
CAMERA = {"width": 640, "height": 360, "noise": 0.3}
ENCODINGS = {
    "h264-cbr-gop2s": {"bitrate": 1_000_000, "gop": 30},
    "h264-vbr-gop2s": {"crf": 26, "maxrate": 1_000_000, "gop": 30},
    "h264-vbr-gop8s": {"crf": 26, "maxrate": 1_000_000, "gop": 120},
    "h264-vbr-dynamic-gop-2-10s": {"crf": 26, "maxrate": 1_000_000, "dynamic_gop": (2, 10)},
    "hevc-vbr-gop2s": {"codec": "libx265", "crf": 28, "maxrate": 1_000_000, "gop": 30},
    "h264-cbr-25fps-gop50": {"fps": 25, "bitrate": 1_000_000, "gop": 50},
    "h264-vbr-gop2s-2-bframes": {"crf": 26, "maxrate": 1_000_000, "gop": 30, "bframes": 2},
    "h264-vbr-gop1s": {"crf": 26, "maxrate": 1_000_000, "gop": 15},
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_every_camera_encoding_is_gated_and_finds_the_same_events(scenes, tmp_path, encoding):
    scene = scenes("walk", duration=30, **CAMERA, **ENCODINGS[encoding])
    stats = same_events(scene, tmp_path)
    assert not stats.gate.startswith("full"), f"{encoding}: {stats.gate}"
    assert stats.frames_skipped >= stats.packets / 5, f"{encoding}: the gate hardly slept"


@pytest.mark.parametrize(
    "encoding",
    ["h264-vbr-gop2s", "h264-vbr-dynamic-gop-2-10s", "h264-vbr-gop2s-2-bframes", "h264-vbr-gop1s"],
)
def test_a_static_vbr_scene_never_wakes_the_gate(scenes, tmp_path, encoding):
    enc = ENCODINGS[encoding]
    scene = scenes("busy", duration=60, motion_fraction=0.0, **CAMERA, **enc)
    events, stats = run(scene, tmp_path, "auto")
    assert events == [] and stats.gate_wakes == 0, (events, stats.gate_wakes)
    # The first GOP in full (the gate learns the frame sizes; 2 s at least, the detector's
    # warm-up), then keyframes only, 2 s apart at least (every other one at a 1 s GOP).
    first_gop = max(enc.get("gop") or 10 * 15, 2 * 15)
    keyframes = math.ceil(stats.packets / max(enc.get("gop") or 2 * 15, 2 * 15))
    assert stats.frames_decoded <= first_gop + keyframes, (stats.frames_decoded, stats.packets)


def test_a_wake_by_frame_sizes_decodes_no_frame_twice(scenes, tmp_path, caplog):
    """Frame-size wakes carry on from where the decoder stopped; only a wake by the keyframe
    analysis decodes again, from the keyframe before (what it saw may have begun there)."""
    scene = scenes("walk", duration=30, **CAMERA, **ENCODINGS["h264-vbr-gop2s"])
    with caplog.at_level(logging.DEBUG, logger="agent.capture.detection"):
        events, stats = run(scene, tmp_path, "auto")
    wakes = [r.getMessage() for r in caplog.records if "gate woke" in r.getMessage()]
    by_sizes = [w for w in wakes if "frame sizes" in w]
    assert by_sizes and events, (wakes, events)
    assert not [w for w in by_sizes if w.endswith("again")], by_sizes
    again = sum(int(re.search(r"decoding (\d+) packets", w)[1]) for w in wakes if "again" in w)
    assert stats.frames_redecoded <= again, (stats.frames_redecoded, wakes)
    assert stats.frames_decoded - stats.frames_redecoded <= stats.packets, stats


def test_a_finished_connection_frees_its_decoder_without_the_cycle_collector(
    scenes, tmp_path, monkeypatch
):
    """A camera's connection (its session and decoder: ~15 MB of frames at 1080p) is freed as
    soon as it ends: left to the cycle collector, a looping or reconnecting camera kept old
    decoders alive, +16 MB a camera at 32 cameras."""
    made = []

    class Tracked(Session):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    monkeypatch.setattr(pipeline, "Session", Tracked)
    scene = scenes("walk", duration=12)
    gc.disable()
    try:
        events, _ = run(scene, tmp_path, "auto")
        assert events and made, (events, made)
        assert [r for r in made if r() is not None] == []
    finally:
        gc.enable()
